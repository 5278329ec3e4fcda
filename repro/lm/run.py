"""Claim 5 end to end, in two pipelines (one per verdict row).

``run_architectures``: Corpora -> Train (3 models x PTB, WikiText-2) -> Evaluate (both Part B settings) ->
Sample -> Plot. ``run_finetune``: PubMedQA -> perplexity before -> Fine-tune -> perplexity after -> Plot.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch

from repro.files import figure_path
from repro.lm import plots
from repro.lm.corpus import Corpus, batchify, corpus_lines, load_corpus, oov_rate, words
from repro.lm.finetune import finetune, pubmedqa_splits
from repro.lm.generation import PROMPTS, SampleStats, sample
from repro.lm.models import KINDS, LMConfig, build_model
from repro.lm.result import ArchitecturesResult, FinetuneResult
from repro.lm.trainer import evaluate, train_lm
from repro.lm.verdict import PUBLISHED
from repro.profiles import FinetuneSettings, LMSettings
from repro.timing import StageTimer

CORPORA = ("ptb", "wikitext2")


def budget_text(s: LMSettings) -> str:
    """The training budget in words, printed next to every number of Parts A and B."""
    train = "all training tokens" if s.train_tokens is None else f"the first {s.train_tokens:,} training tokens"
    valid = "the whole validation split" if s.valid_tokens is None else f"the first {s.valid_tokens:,} validation tokens"
    return (f"at most {s.max_epochs} epochs over {train}, BPTT {s.seq_len}, batch {s.batch_size}, "
            f"validated on {valid}")


def finetune_budget_text(s: FinetuneSettings) -> str:
    steps = f"{s.max_steps} steps" if s.max_steps else f"at most {s.max_epochs} epochs"
    held = "all held-out blocks" if s.eval_blocks is None else f"{s.eval_blocks} held-out blocks"
    return (f"{steps} of batch {s.batch_size} x {s.seq_len} tokens, lr {s.lr:g}, warm-up {s.warmup_steps}; "
            f"perplexity on {held} of {s.seq_len} tokens")


def _prefix(ids: torch.Tensor, n: int | None) -> torch.Tensor:
    return ids if n is None else ids[:n]


def train_one(corpus: Corpus, kind: str, settings: LMSettings, work_dir: Path, *, progress: bool = False,
              tensorboard: bool = False):
    """(model, TrainingRun): one model trained on ``corpus`` from the seeded initialisation."""
    torch.manual_seed(settings.model_seed)  # the same initial weights and dropout for a model wherever it runs
    model = build_model(LMConfig(kind, len(corpus.vocab), context=settings.seq_len))
    run = train_lm(model, _prefix(corpus.splits["train"], settings.train_tokens),
                   _prefix(corpus.splits["valid"], settings.valid_tokens), settings, work_dir / f"{corpus.name}-{kind}",
                   progress=progress, tensorboard=tensorboard, label=f"{corpus.name} {kind}")
    return model, run


def run_architectures(settings: LMSettings, out_dir: Path, *, work_dir: Path | None = None,
                      progress: bool = False) -> ArchitecturesResult:
    """Train the three models on PTB and on WikiText-2 with one recipe and compare validation perplexity.

    ``work_dir`` keeps checkpoints and metrics (a rerun resumes there); None uses a temporary folder.
    """
    timer = StageTimer()
    with timer.stage("corpora"):
        corpora = {name: load_corpus(name) for name in CORPORA}
        wt2_valid_words = words(corpus_lines("wikitext2")["valid"])
        wt2_valid_words = wt2_valid_words if settings.valid_tokens is None else wt2_valid_words[: settings.valid_tokens]
        wt2_with_ptb_vocab = corpora["ptb"].vocab.encode(wt2_valid_words)  # setting 2: OOV -> <unk>
    val_ppl: dict[str, dict[str, float]] = {c: {} for c in CORPORA}
    cross_ppl: dict[str, float] = {}
    runs, samples = {c: {} for c in CORPORA}, {}
    with tempfile.TemporaryDirectory(prefix="repro-lm-") as tmp:
        root = Path(work_dir) if work_dir else Path(tmp)
        for corpus in corpora.values():
            for kind in KINDS:
                with timer.stage(f"train {corpus.name}"):
                    model, run = train_one(corpus, kind, settings, root, progress=progress)
                runs[corpus.name][kind] = run
                val_ppl[corpus.name][kind] = math.exp(run.best_val_loss)
                if corpus.name == "ptb":
                    with timer.stage("evaluate ptb -> wikitext2"):
                        data = batchify(wt2_with_ptb_vocab, settings.eval_batch_size)
                        cross_ppl[kind] = math.exp(evaluate(model, data, settings.seq_len))
                else:  # the seed sampled from its WikiText-2 models
                    with timer.stage("sample"):
                        # The same seeds for every model (common random numbers): samples differ where the models do.
                        samples[kind] = {
                            prompt: [sample(model, corpus.vocab, prompt, settings.sample_words,
                                            temperature=settings.temperature, seed=settings.sample_seed + 100 * p + i)
                                     for i in range(settings.samples_per_prompt)]
                            for p, prompt in enumerate(PROMPTS)
                        }
    budget = budget_text(settings)
    figures = {
        "learning_curves": plots.learning_curves(
            {c: {k: r.epochs for k, r in by_kind.items()} for c, by_kind in runs.items()}, budget,
            figure_path(out_dir, "word-lms", "perplexity", "learning-curves")),
        "batch_losses": plots.batch_losses(
            {c: {k: r.batch_losses for k, r in by_kind.items()} for c, by_kind in runs.items()}, settings.log_every,
            figure_path(out_dir, "word-lms", "perplexity", "batch-losses")),
        "perplexity": plots.perplexity_bars(
            {"PTB": val_ppl["ptb"], "WikiText-2\n(1: trained on it)": val_ppl["wikitext2"],
             "WikiText-2\n(2: PTB-trained, OOV->unk)": cross_ppl},
            PUBLISHED["wikitext2_val_ppl"], budget, figure_path(out_dir, "word-lms", "perplexity", "orderings")),
    }
    return ArchitecturesResult(
        settings=settings,
        budget=budget,
        vocab_sizes={c: len(corpora[c].vocab) for c in CORPORA},
        oov_rate_wt2_in_ptb_vocab=oov_rate(corpora["ptb"].vocab, wt2_valid_words),
        val_ppl=val_ppl,
        cross_ppl=cross_ppl,
        runs=runs,
        samples=samples,
        sample_stats={k: SampleStats.of([s for p in by_prompt.values() for s in p]) for k, by_prompt in samples.items()},
        seconds=timer.seconds,
        figures=figures,
    )


def run_finetune(lm, settings: FinetuneSettings, out_dir: Path, *, device: str = "cpu",
                 progress: bool = False) -> FinetuneResult:
    """Fine-tune a loaded pretrained model (``repro.models.LoadedModel``) on PubMedQA; perplexity before/after."""
    from repro import assets

    timer = StageTimer()
    train_texts, test_texts = pubmedqa_splits(*assets.pubmedqa())
    with timer.stage("fine-tune"):
        measured = finetune(lm.model, lm.tokenizer, train_texts, test_texts, settings, device=device, progress=progress)
    budget = finetune_budget_text(settings)
    figure = plots.finetune_curve(measured.losses, measured.evals, budget, figure_path(out_dir, lm.key, "perplexity", "finetune"))
    return FinetuneResult(lm.key, settings, budget, len(train_texts), len(test_texts), measured, timer.seconds,
                          {"finetune": figure})

"""Claim 5 end to end, in two pipelines (one per verdict row).

``run_architectures``: Corpora and slices -> Baselines -> Train (3 models x seeds x corpora, each round validated on
the selection slice) -> Score every reported token (models and baselines) -> Sample -> Plot. ``run_finetune``:
PubMedQA and a WikiText-2 control -> per-token loss before -> Fine-tune -> per-token loss after -> Plot. The
result objects (``repro.lm.result``) turn the per-token losses into intervals and a verdict.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from repro.files import figure_path
from repro.lm import plots
from repro.lm.baselines import baselines
from repro.lm.corpus import Corpus, batchify, build_corpus, corpus_lines, oov_rate, ptb_conventions, words
from repro.lm.finetune import finetune, pubmedqa_splits
from repro.lm.generation import PROMPTS, SampleStats, sample
from repro.lm.models import KINDS, LMConfig, build_model, unigram_output_bias
from repro.lm.result import ArchitecturesResult, Evaluation, FinetuneResult
from repro.lm.trainer import run_provenance, token_losses, train_lm
from repro.profiles import FinetuneSettings, LMSettings
from repro.timing import StageTimer

PART_A, PART_B = "ptb", "wikitext2"  # evaluation sets: PTB validation; WikiText-2 validation


def budget_text(s: LMSettings) -> str:
    """The training budget in words, printed next to every number of Parts A and B."""
    train = "all training tokens" if s.train_tokens is None else f"the first {s.train_tokens:,} training tokens"
    passes = "once (fresh tokens)" if s.max_epochs == 1 else f"for at most {s.max_epochs} epochs"
    every = "every epoch" if s.eval_every_tokens is None else f"every {s.eval_every_tokens:,} tokens"
    bias = ", output bias from the unigram" if s.output_bias == "unigram" else ""
    return (f"d{s.d_model} x {s.n_layers} layers, dropout {s.dropout}{bias}; {train} read {passes}, BPTT {s.seq_len}, batch "
            f"{s.batch_size}, Adam {s.lr:g}; validated {every}; {len(s.seeds)} seed(s)")


def finetune_budget_text(s: FinetuneSettings) -> str:
    steps = f"{s.max_steps} steps" if s.max_steps else f"at most {s.max_epochs} epochs"
    how = f"LoRA r {s.lora_r}" if s.method == "lora" else "every weight"
    held = "all held-out blocks" if s.eval_blocks is None else f"{s.eval_blocks} held-out blocks"
    return f"{how}, {steps} of batch {s.batch_size} x {s.seq_len} tokens, lr {s.lr:g}; {held} (+ as many control blocks)"


def slices(corpus: Corpus, s: LMSettings) -> dict[str, torch.Tensor]:
    """Training prefix, selection slice (the validation split's tail) and reported slice (its head), disjoint."""
    valid = corpus.splits["valid"]
    if s.select_tokens >= len(valid):
        raise ValueError(f"{corpus.name}: a selection slice of {s.select_tokens:,} tokens leaves nothing of the "
                         f"{len(valid):,} validation tokens to report.")
    rest = len(valid) - s.select_tokens
    report = rest if s.report_tokens is None else min(s.report_tokens, rest)
    train = corpus.splits["train"]
    return {"train": train if s.train_tokens is None else train[: s.train_tokens],
            "select": valid[rest:], "report": valid[:report]}


def stream(ids: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(batchified data [batch, steps], previous words, target words), the last two flat in stream order."""
    data = batchify(ids, batch_size)
    return data, data[:, :-1].reshape(-1), data[:, 1:].reshape(-1)


def seeded_model(vocab_size: int, kind: str, settings: LMSettings, seed: int, train_ids: torch.Tensor):
    """A model of the profile's sizes from ``seed`` (the same initial weights and dropout wherever it runs)."""
    if settings.output_bias not in ("unigram", "zero"):
        raise ValueError(f"Unknown output_bias {settings.output_bias!r}; valid: unigram, zero.")
    torch.manual_seed(seed)
    model = build_model(LMConfig(kind, vocab_size, d_model=settings.d_model, n_layers=settings.n_layers,
                                 dropout=settings.dropout, context=settings.seq_len))
    if settings.output_bias == "unigram":
        unigram_output_bias(model, train_ids)
    return model


def run_architectures(settings: LMSettings, out_dir: Path, *, device: str = "cpu", work_dir: Path | None = None,
                      tensorboard_dir: Path | None = None, profile: str = "", progress: bool = False,
                      read_lines: Callable[[str], dict[str, list[str]]] = corpus_lines) -> ArchitecturesResult:
    """Train the three models with one recipe and score them, and the baselines, on the same tokens.

    ``work_dir`` keeps checkpoints (a rerun resumes there); None uses a temporary folder. ``tensorboard_dir``
    receives one event folder per model and seed (replaced whole) when the ``tensorboard`` extra is installed.
    """
    timer = StageTimer()
    with timer.stage("corpora"):
        corpora = {name: build_corpus(name, read_lines(name)) for name in settings.corpora}
        cut = {name: slices(corpus, settings) for name, corpus in corpora.items()}
        # Part B: WikiText-2 models on their validation text (gpu, the seed's setting), else the PTB models on
        # WikiText-2 validation text written in PTB's conventions, through PTB's vocabulary.
        if PART_B in corpora:
            sets, oov = {PART_A: (PART_A, cut[PART_A]["report"]), PART_B: (PART_B, cut[PART_B]["report"])}, None
        else:
            wt2 = words(ptb_conventions(read_lines(PART_B)["valid"]))[: settings.part_b_tokens]
            oov = oov_rate(corpora[PART_A].vocab, wt2)
            sets = {PART_A: (PART_A, cut[PART_A]["report"]), PART_B: (PART_A, corpora[PART_A].vocab.encode(wt2))}
        scored = {name: stream(ids, settings.eval_batch_size) for name, (_, ids) in sets.items()}
    with timer.stage("baselines"):
        counts = {name: baselines(cut[name]["train"], len(corpus.vocab)) for name, corpus in corpora.items()}
        baseline_losses = {}
        for name, (trained, _) in sets.items():
            _, prev, target = scored[name]
            baseline_losses[name] = {b: model.token_losses(prev, target) for b, model in counts[trained].items()}
        _, prev, target = stream(cut[PART_A]["select"], settings.eval_batch_size)
        selection_baselines = {b: float(model.token_losses(prev, target).mean()) for b, model in counts[PART_A].items()}
    losses = {name: {k: {} for k in KINDS} for name in sets}
    runs = {c: {k: {} for k in KINDS} for c in corpora}
    samples = {}
    with tempfile.TemporaryDirectory(prefix="repro-lm-") as tmp:
        root = Path(work_dir) if work_dir else Path(tmp)
        for corpus_name, corpus in corpora.items():
            for kind in KINDS:
                for seed in settings.seeds:
                    name = f"{corpus_name}-{kind}-seed{seed}"
                    part = {k: ids.to(device) for k, ids in cut[corpus_name].items()}
                    model = seeded_model(len(corpus.vocab), kind, settings, seed, part["train"]).to(device)
                    provenance = run_provenance(model, part["train"], part["select"], settings, vocab=corpus.vocab,
                                                profile=profile, seed=seed)
                    with timer.stage(f"train {corpus_name}"):
                        runs[corpus_name][kind][seed] = train_lm(
                            model, part["train"], part["select"], settings, root / name, provenance=provenance,
                            vocab=corpus.vocab, progress=progress, tensorboard_dir=root / name / "tensorboard" if tensorboard_dir else None,
                            label=f"{corpus_name} {kind} seed {seed}")
                    with timer.stage("score"):
                        for set_name, (trained, _) in sets.items():
                            if trained == corpus_name:
                                data = scored[set_name][0].to(device)
                                losses[set_name][kind][seed] = token_losses(model, data, settings.seq_len).flatten().numpy()
                    if corpus_name == PART_A and seed == settings.seeds[0]:  # the seed's samples are PTB output
                        with timer.stage("sample"):
                            samples[kind] = _samples(model, corpus, settings)
        tensorboard = _publish(root, tensorboard_dir) if tensorboard_dir else []
    budget = budget_text(settings)
    result = ArchitecturesResult(
        settings=settings, budget=budget, profile=profile,
        vocab_sizes={c: len(corpus.vocab) for c, corpus in corpora.items()},
        evaluations={name: Evaluation(name, trained, len(scored[name][2]), losses[name], baseline_losses[name])
                     for name, (trained, _) in sets.items()},
        part_b_oov_rate=oov, runs=runs, selection_baselines=selection_baselines,
        ptb_valid_tokens=len(corpora[PART_A].splits["valid"]), samples=samples,
        sample_stats={k: SampleStats.of([s for p in by_prompt.values() for s in p]) for k, by_prompt in samples.items()},
        seconds=timer.seconds, tensorboard=tensorboard,
    )
    result.figures = {
        "learning_curves": plots.learning_curves(result.curves(), selection_baselines, budget,
                                                 figure_path(out_dir, "word-lms", "perplexity", "learning-curves")),
        "perplexity": plots.perplexity_bars(result.perplexity_table(), budget,
                                            figure_path(out_dir, "word-lms", "perplexity", "orderings")),
    }
    return result


def _samples(model, corpus: Corpus, settings: LMSettings) -> dict[str, list[list[str]]]:
    # The same sampling seeds for every model (common random numbers): samples differ where the models do.
    return {prompt: [sample(model, corpus.vocab, prompt, settings.sample_words, temperature=settings.temperature,
                            seed=settings.sample_seed + 100 * p + i) for i in range(settings.samples_per_prompt)]
            for p, prompt in enumerate(PROMPTS)}


def _publish(root: Path, dest: Path) -> list[Path]:
    """Copy each run's event folder from ``root`` to ``dest/<run>`` (replaced whole); the event files now there,
    relative to ``dest``'s parent (``tensorboard/<run>/events...``)."""
    published = []
    for events in sorted(root.glob("*/tensorboard")):  # none when the tensorboard extra is not installed
        target = Path(dest) / events.parent.name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(events, target)
        published += [p.relative_to(Path(dest).parent) for p in sorted(target.glob("events.out.tfevents.*"))]
    return published


def run_finetune(lm, settings: FinetuneSettings, out_dir: Path, *, device: str = "cpu",
                 progress: bool = False) -> FinetuneResult:
    """Fine-tune a loaded pretrained model (``repro.models.LoadedModel``) on PubMedQA; per-token loss before/after."""
    from repro import assets

    timer = StageTimer()
    train_docs, test_docs = pubmedqa_splits(*assets.pubmedqa())
    control_lines = assets.wikitext2()["valid"]
    with timer.stage("fine-tune and score"):
        measured = finetune(lm.model, lm.tokenizer, train_docs, test_docs, control_lines, settings, device=device,
                            progress=progress)
    result = FinetuneResult(lm.key, settings, finetune_budget_text(settings), len(train_docs), len(test_docs), measured,
                            timer.seconds)
    result.figures = {"finetune": plots.finetune_summary(
        measured.losses, result.factor_rows(), result.budget, figure_path(out_dir, lm.key, "perplexity", "finetune"))}
    return result


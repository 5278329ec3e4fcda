"""``python -m repro lm``: train, compare, sample from and fine-tune language models (claim 5).

    python -m repro lm train --corpus ptb --kind lstm --out runs/ptb-lstm      # resumes when run again
    python -m repro lm sample --checkpoint runs/ptb-lstm/best.pt --prompt "the meaning of life is"
    python -m repro lm compare --out out/lm                                    # Parts A and B, the claim's budget
    python -m repro lm finetune --model smollm2-135m --out out/lm-finetune     # Part C

Bad input (an unknown corpus, a missing split, a corpus too small for one batch, a file that is not UTF-8, a
count below 1, an empty prompt, a checkpoint of other settings or with weights that do not fit its config)
ends with one line on stderr and exit status 2, before any training starts.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

from repro.cli import (
    ArgumentParser,
    UserError,
    add_force_flag,
    check_out,
    guarded,
    quiet_libraries,
    resolve_profile,
)
from repro.files import check_writable, jsonable, staged_dir, write_json_atomic

COMMAND = "lm"


def _positive(flag: str, value, *, kind: str = "integer") -> None:
    """Checked in the command, not by argparse, so a bad value is one line (argparse adds its usage line)."""
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise UserError(f"{flag} must be a positive {kind}, got {value}.")


def _tokens(text: str | None) -> int | None:
    """--train-tokens: 'all' (None) or a positive integer."""
    if text is None or text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"--train-tokens must be a positive integer or 'all', got {text!r}.") from None
    _positive("--train-tokens", value)
    return value


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=f"python -m repro {COMMAND}", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog="\n".join(__doc__.splitlines()[2:7]))
    sub = p.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", default=None, help="run profile: cpu or gpu (default: $REPRO_PROFILE or cpu)")
    common.add_argument("--quiet", action="store_true", help="no progress bars")

    t = sub.add_parser("train", parents=[common], help="train one model with the seed's recipe (resumable)")
    t.add_argument("--corpus", default="ptb", help="ptb, wikitext2, or a folder with train.txt and valid.txt")
    t.add_argument("--kind", default="lstm", choices=("rnn", "lstm", "transformer"))
    t.add_argument("--out", type=Path, required=True, help="folder for checkpoints, metrics.json, tensorboard/")
    t.add_argument("--epochs", type=int, default=None, help="passes over the training tokens (default: the profile's)")
    t.add_argument("--train-tokens", default=None,
                   help="training prefix in tokens, or 'all' (default: the profile's)")
    t.add_argument("--seq-len", type=int, default=None, help="BPTT window (default: the profile's)")
    t.add_argument("--seed", type=int, default=None, help="initial weights and dropout (default: the profile's first)")

    s = sub.add_parser("sample", parents=[common], help="sample words from a trained checkpoint")
    s.add_argument("--checkpoint", type=Path, required=True, help="best.pt or last.pt written by `train`")
    s.add_argument("--corpus", default=None, help="optional: check the checkpoint's vocabulary against this corpus")
    s.add_argument("--prompt", default="the meaning of life is")
    s.add_argument("--words", type=int, default=40)
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--seed", type=int, default=0)

    c = sub.add_parser("compare", parents=[common], help="Parts A and B: three models on PTB at the profile's budget")
    c.add_argument("--out", type=Path, default=Path("out/lm"), help="figures, result.json and tensorboard/")
    c.add_argument("--work", type=Path, default=None, help="keep checkpoints here to resume (default: temporary)")
    add_force_flag(c)

    f = sub.add_parser("finetune", parents=[common], help="Part C: fine-tune a pretrained model on PubMedQA")
    f.add_argument("--model", default="smollm2-135m", choices=("smollm2-135m", "gpt2"))
    f.add_argument("--out", type=Path, default=Path("out/lm-finetune"), help="figure and result.json")
    add_force_flag(f)
    return p


def _corpus(name: str):
    from repro.lm.corpus import CorpusError, load_corpus

    try:
        return load_corpus(name)
    except CorpusError as err:
        raise UserError(str(err)) from None


def _writable(folder: Path, what: str) -> None:
    try:
        check_writable(folder.expanduser().absolute(), what)
    except OSError as err:
        raise UserError(str(err)) from None


def _enough(ids, rows: int, what: str, corpus: str) -> None:
    if ids.numel() < 2 * rows:  # batchify needs two tokens per row
        raise UserError(f"corpus {corpus!r}: {what} has {ids.numel()} tokens, fewer than the {2 * rows} that one batch "
                        f"of {rows} rows needs; give it more text.")


def train(args, profile) -> int:
    from repro.lm.run import seeded_model
    from repro.lm.trainer import CheckpointError, run_provenance, train_lm

    _positive("--epochs", args.epochs)
    _positive("--seq-len", args.seq_len)
    settings = replace(profile.lm, **{k: v for k, v in {"max_epochs": args.epochs, "seq_len": args.seq_len}.items() if v is not None})
    if args.train_tokens is not None:
        settings = replace(settings, train_tokens=_tokens(args.train_tokens))
    seed = settings.seeds[0] if args.seed is None else args.seed
    corpus = _corpus(args.corpus)  # every input check before --out is created
    train_ids = corpus.splits["train"][: settings.train_tokens]
    select_ids = corpus.splits["valid"][-settings.select_tokens :]
    _enough(train_ids, settings.batch_size, "the training prefix", args.corpus)
    _enough(select_ids, settings.eval_batch_size, "the validation split", args.corpus)
    model = seeded_model(len(corpus.vocab), args.kind, settings, seed, train_ids).to(profile.device)
    provenance = run_provenance(model, train_ids, select_ids, settings, vocab=corpus.vocab, profile=profile.name, seed=seed)
    out = args.out.expanduser()
    if (out / "last.pt").is_file():  # refuse other settings before anything is written
        from repro.lm.trainer import load_checkpoint

        try:
            load_checkpoint(out / "last.pt", provenance)
        except CheckpointError as err:
            raise UserError(str(err)) from None
    _writable(out, "--out")
    args.kept = (f"the checkpoint of the last finished round is kept in {out} (last.pt); run the same command "
                 "again to resume from it")
    try:
        run = train_lm(model, train_ids.to(profile.device), select_ids.to(profile.device), settings, out,
                       provenance=provenance, vocab=corpus.vocab, progress=not args.quiet,
                       tensorboard_dir=out / "tensorboard", label=f"{args.corpus} {args.kind}")
    except CheckpointError as err:
        raise UserError(str(err)) from None
    for r in run.rounds:
        print(f"round {r['round']:3d}  epoch {r['epoch']:2d}  tokens {r['tokens_seen']:9,d}  train loss {r['train_loss']:.3f}  "
              f"val loss {r['val_loss']:.3f}  val ppl {r['val_ppl']:8.1f}  lr {r['lr']:.2e}  {r['event']}")
    print(f"best validation perplexity {math.exp(run.best_val_loss):.1f}; {run.parameters:,} parameters; "
          f"{run.tokens_per_s:,.0f} training tokens/s; checkpoints and metrics.json in {out}")
    return 0


def sample_words(args, profile) -> int:
    import torch

    from repro.lm.corpus import Vocabulary
    from repro.lm.generation import sample
    from repro.lm.models import KINDS, LMConfig, build_model
    from repro.lm.trainer import CheckpointError, load_weights, read_checkpoint

    _positive("--words", args.words)
    _positive("--temperature", args.temperature, kind="number")
    if not args.prompt.split():
        raise UserError("--prompt is empty: give at least one word to continue, e.g. --prompt 'the'.")
    if not args.checkpoint.is_file():
        raise UserError(f"checkpoint not found: {args.checkpoint}; `python -m repro lm train --out DIR` writes DIR/best.pt.")
    try:
        saved = read_checkpoint(args.checkpoint)
        config = LMConfig(**saved["provenance"]["model"])
        if config.kind not in KINDS:
            raise CheckpointError(f"{args.checkpoint}: unknown model kind {config.kind!r}.")
        if not isinstance(saved.get("vocabulary"), list):
            raise CheckpointError(f"{args.checkpoint} holds no vocabulary; it was not written by `lm train`.")
        vocab = Vocabulary(tuple(saved["vocabulary"]))
        if args.corpus is not None and _corpus(args.corpus).vocab.sha256 != vocab.sha256:
            raise CheckpointError(f"{args.checkpoint} was trained with another vocabulary than corpus {args.corpus!r}'s; "
                                  "leave --corpus out to use the checkpoint's own.")
        model = build_model(config)
        load_weights(model, saved["model"], args.checkpoint)
    except CheckpointError as err:
        raise UserError(str(err)) from None
    except (TypeError, KeyError) as err:  # a config with missing or unknown fields
        raise UserError(f"{args.checkpoint} has an unreadable model config ({type(err).__name__}: {err}).") from None
    with torch.no_grad():
        out = sample(model, vocab, args.prompt, args.words, temperature=args.temperature, seed=args.seed)
    print(args.prompt, " ".join(out))
    return 0


def compare(args, profile) -> int:
    from repro.lm import run_architectures

    check_out(args.out, force=args.force, command="lm compare")
    args.kept = f"{args.out} is as it was; " + (
        f"the checkpoints of finished rounds are kept in {args.work}; run the same command again to resume"
        if args.work else "nothing was kept (pass --work DIR to keep checkpoints and resume)")
    with staged_dir(args.out) as out:
        result = run_architectures(profile.lm, out, device=profile.device, work_dir=args.work,
                                   tensorboard_dir=out / "tensorboard", profile=profile.name, progress=not args.quiet)
        m = result.measurement()
        write_json_atomic(out / "result.json", {"verdict": m.verdict, "criteria": m.criteria, "numbers": m.numbers,
                                                "notes": m.notes, "ruling": m.ruling})
    print(json.dumps(jsonable(m.criteria), indent=2))
    print(f"verdict {m.verdict.value}; figures and result.json in {args.out}")
    return 0


def finetune(args, profile) -> int:
    from repro.lm import run_finetune
    from repro.models import load_model

    check_out(args.out, force=args.force, command="lm finetune")
    lm = load_model(args.model, profile.device, profile.dtype)  # a missing model is an AssetError: one line
    with staged_dir(args.out) as out:
        result = run_finetune(lm, profile.lm.finetune, out, device=profile.device, progress=not args.quiet)
        m = result.measurement()
        write_json_atomic(out / "result.json", {"verdict": m.verdict, "numbers": m.numbers, "notes": m.notes,
                                                "ruling": m.ruling})
    content = result.estimates["content tokens"]
    print(f"perplexity {result.measured.ppl_before:.2f} -> {result.measured.ppl_after:.2f} ({result.measured.factor:.2f}x); "
          f"content tokens {content.value:.3f}x [{content.interval.low:.3f}, {content.interval.high:.3f}]; "
          f"verdict {m.verdict.value}; written to {args.out}")
    return 0


ACTIONS = {"train": train, "sample": sample_words, "compare": compare, "finetune": finetune}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        if args.quiet:
            quiet_libraries()
        profile = resolve_profile(args.profile)
        return ACTIONS[args.action](args, profile)

    # an action that keeps work on Ctrl-C (a checkpoint) says so in ``args.kept`` once it has checked its input
    return guarded(COMMAND, body, on_interrupt=lambda: getattr(args, "kept", ""))

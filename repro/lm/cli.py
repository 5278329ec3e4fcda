"""``python -m repro lm``: train, compare, sample from and fine-tune language models (claim 5).

    python -m repro lm train --corpus ptb --kind lstm --out runs/ptb-lstm      # resumes when run again
    python -m repro lm sample --checkpoint runs/ptb-lstm/best.pt --corpus ptb --prompt "the meaning of life is"
    python -m repro lm compare --out out/lm                                    # Parts A and B, the claim's budget
    python -m repro lm finetune --model smollm2-135m --out out/lm-finetune     # Part C

Bad input (an unknown corpus, a missing split, an empty corpus, a checkpoint of another model) ends with one
line on stderr and exit status 2, before any training starts.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

from repro.cli import UserError, add_force_flag, check_out, guarded, quiet_libraries, resolve_profile
from repro.files import check_writable, jsonable, staged_dir, write_json_atomic

COMMAND = "lm"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m repro {COMMAND}", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog="\n".join(__doc__.splitlines()[2:7]))
    sub = p.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", default=None, help="run profile: cpu or gpu (default: $REPRO_PROFILE or cpu)")
    common.add_argument("--quiet", action="store_true", help="no progress bars")

    t = sub.add_parser("train", parents=[common], help="train one model with the seed's recipe (resumable)")
    t.add_argument("--corpus", default="ptb", help="ptb, wikitext2, or a folder with train.txt and valid.txt")
    t.add_argument("--kind", default="lstm", choices=("rnn", "lstm", "transformer"))
    t.add_argument("--out", type=Path, required=True, help="folder for checkpoints, metrics.json, tensorboard/")
    t.add_argument("--epochs", type=int, default=None, help="epoch cap (default: the profile's)")
    t.add_argument("--train-tokens", type=int, default=None, help="training prefix in tokens; 0 = all (default: the profile's)")
    t.add_argument("--seq-len", type=int, default=None, help="BPTT window (default: the profile's)")

    s = sub.add_parser("sample", parents=[common], help="sample words from a trained checkpoint")
    s.add_argument("--checkpoint", type=Path, required=True, help="best.pt or last.pt written by `train`")
    s.add_argument("--corpus", default="ptb", help="the corpus the checkpoint was trained on (its vocabulary)")
    s.add_argument("--prompt", default="the meaning of life is")
    s.add_argument("--words", type=int, default=40)
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--seed", type=int, default=0)

    c = sub.add_parser("compare", parents=[common], help="Parts A and B: three models x PTB, WikiText-2 at the profile's budget")
    c.add_argument("--out", type=Path, default=Path("out/lm"), help="figures and result.json")
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


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UserError(f"{name} must be a positive integer, got {value}.")


def train(args, profile) -> int:
    import torch

    from repro.lm.models import LMConfig, build_model
    from repro.lm.trainer import CheckpointError, train_lm

    _positive("--epochs", args.epochs)
    _positive("--seq-len", args.seq_len)
    _writable(args.out, "--out")
    settings = profile.lm
    overrides = {"max_epochs": args.epochs, "seq_len": args.seq_len}
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if args.train_tokens is not None:
        settings = replace(settings, train_tokens=args.train_tokens or None)
    corpus = _corpus(args.corpus)
    torch.manual_seed(settings.model_seed)
    model = build_model(LMConfig(args.kind, len(corpus.vocab), context=settings.seq_len)).to(profile.device)
    train_ids = corpus.splits["train"] if settings.train_tokens is None else corpus.splits["train"][: settings.train_tokens]
    try:
        run = train_lm(model, train_ids.to(profile.device), corpus.splits["valid"].to(profile.device), settings, args.out,
                       progress=not args.quiet, label=f"{args.corpus} {args.kind}")
    except CheckpointError as err:
        raise UserError(str(err)) from None
    for e in run.epochs:
        print(f"epoch {e['epoch']:3d}  train loss {e['train_loss']:.3f}  val loss {e['val_loss']:.3f}  "
              f"val ppl {e['val_ppl']:8.1f}  lr {e['lr']:.2e}  {e['event']}")
    print(f"best validation perplexity {math.exp(run.best_val_loss):.1f}; {run.parameters:,} parameters; "
          f"checkpoints and metrics.json in {args.out}")
    return 0


def sample_words(args, profile) -> int:
    import torch

    from repro.lm.generation import sample
    from repro.lm.models import KINDS, LMConfig, build_model

    if not args.checkpoint.is_file():
        raise UserError(f"checkpoint not found: {args.checkpoint}; `python -m repro lm train --out DIR` writes DIR/best.pt.")
    try:
        saved = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        config = LMConfig(**saved["config"])
    except Exception as err:  # not a torch file, refused by weights_only, or another format
        raise UserError(f"{args.checkpoint} is not a repro.lm checkpoint ({type(err).__name__}).") from None
    if config.kind not in KINDS:
        raise UserError(f"{args.checkpoint}: unknown model kind {config.kind!r}.")
    corpus = _corpus(args.corpus)
    if config.vocab_size != len(corpus.vocab):
        raise UserError(f"{args.checkpoint} has a vocabulary of {config.vocab_size:,} words but corpus {args.corpus!r} "
                        f"has {len(corpus.vocab):,}: pass the --corpus it was trained on.")
    model = build_model(config)
    model.load_state_dict(saved["model"])
    try:
        out = sample(model, corpus.vocab, args.prompt, args.words, temperature=args.temperature, seed=args.seed)
    except ValueError as err:
        raise UserError(str(err)) from None
    print(args.prompt, " ".join(out))
    return 0


def compare(args, profile) -> int:
    from repro.lm import run_architectures

    check_out(args.out, force=args.force, command="lm compare")
    with staged_dir(args.out) as out:
        result = run_architectures(profile.lm, out, work_dir=args.work, progress=not args.quiet)
        m = result.measurement()
        write_json_atomic(out / "result.json", {"verdict": m.verdict, "criteria": m.criteria, "numbers": m.numbers,
                                                "notes": m.notes})
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
        write_json_atomic(out / "result.json", {"verdict": m.verdict, "numbers": m.numbers, "notes": m.notes})
    print(f"perplexity {result.measured.ppl_before:.2f} -> {result.measured.ppl_after:.2f} "
          f"({result.measured.factor:.2f}x); verdict {m.verdict.value}; written to {args.out}")
    return 0


ACTIONS = {"train": train, "sample": sample_words, "compare": compare, "finetune": finetune}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        if args.quiet:
            quiet_libraries()
        profile = resolve_profile(args.profile)
        return ACTIONS[args.action](args, profile)

    return guarded(COMMAND, body)

"""``python -m repro gradsim``: seed 001's command line, writing the seed's files.

    python -m repro gradsim --hotpot_data F --model_path M --max_samples N --max_experiments K \\
        --device cpu --output_dir D

``--model_path`` is a registered key (``smollm2-135m``, ``gpt2``), a local folder or a hub id of a GPT-2-
or LLaMA-family causal LM. Everything that can be checked before loading the model is: the HotpotQA file
(read through ``repro.readers``: every record's fields and their types, and that it gives pieces),
``--max_samples`` against the records in it, the model's family (from its config), the device,
``--max_experiments`` against the facts available, and that ``--output_dir`` can be written. Bad input
ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from repro.files import staged_dir
from repro.gradsim.outputs import SEED_FILES, write_seed_outputs
from repro.gradsim.pieces import fact_pieces, hotpot_pieces, read_hotpot_file

COMMAND = "gradsim"


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=f"python -m repro {COMMAND}", description=__doc__.splitlines()[0])
    p.add_argument("--hotpot_data", type=Path, default=None,
                   help="HotpotQA JSON in the original format (default: the data directory's 103 dev examples)")
    p.add_argument("--model_path", default="smollm2-135m", help="registered key, local folder or hub id")
    p.add_argument("--max_samples", type=int, default=None,
                   help="HotpotQA examples to read, at most the records in the file (default: the profile's)")
    p.add_argument("--max_experiments", type=int, default=None, help="MEMIT edits of known facts (default: the profile's)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: the profile's)")
    p.add_argument("--output_dir", type=Path, default=Path("out/gradsim"), help="folder for the seed's files")
    add_force_flag(p, "--output_dir")
    p.add_argument("--profile", default=None, help="cpu or gpu: sizes not given above (default: $REPRO_PROFILE or cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _checked(args) -> tuple:
    """(profile, settings, examples) after every check that needs no model."""
    from repro.models import ModelUnavailable, check_model_family

    profile = resolve_profile(args.profile, check_device=args.device is None)
    device = args.device or profile.device
    if device not in {"cpu", "cuda"}:
        raise UserError(f"--device {device!r}: use cpu or cuda.")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: torch sees no CUDA GPU; use --device cpu.")
    for flag, value in (("--max_samples", args.max_samples), ("--max_experiments", args.max_experiments)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value}: must be a positive integer.")
    settings = profile.gradsim
    overrides = {"hotpot_examples": args.max_samples, "max_experiments": args.max_experiments}
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if args.hotpot_data is not None:
        examples = read_hotpot_file(args.hotpot_data)  # a malformed record: InputError, one line, exit 2
    else:
        from repro.assets import hotpotqa

        examples = hotpotqa()
    where = args.hotpot_data or "the HotpotQA data"
    if args.max_samples is not None and args.max_samples > len(examples):
        n = len(examples)
        raise UserError(f"--max_samples {args.max_samples}: {where} holds {n} record{'s' * (n != 1)}; give at most {n}.")
    hot = hotpot_pieces(examples, settings.hotpot_examples)
    if not hot.pieces:
        raise UserError(f"{where} gives no knowledge pieces from its first "
                        f"{hot.read} example(s): {dict(hot.drops)}. Bridge questions whose answer appears in a "
                        "supporting sentence are needed.")
    available = len(fact_pieces().pieces)
    if settings.max_experiments > available:
        raise UserError(f"--max_experiments {settings.max_experiments} exceeds the {available} facts of the "
                        "known-facts fixture (the pieces that are edited; HotpotQA pieces are descriptive); give at "
                        "most that many.")
    try:
        check_model_family(args.model_path)
        check_out(args.output_dir, force=args.force, flag="--output_dir")
    except (ModelUnavailable, OSError) as err:
        raise UserError(str(err)) from None
    return profile, device, settings, examples


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        if args.quiet:
            quiet_libraries()
        profile, device, settings, examples = _checked(args)
        from repro.gradsim.run import run_gradsim
        from repro.models import load_model_path

        lm = load_model_path(args.model_path, device, profile.dtype)
        with staged_dir(args.output_dir) as staging:
            try:
                result = run_gradsim(lm, settings, None, examples=examples, progress=not args.quiet)
            except ValueError as err:
                raise UserError(str(err)) from None
            write_seed_outputs(result, staging)  # figures drawn here, once
        m = result.measurement()
        interval = f" {m.key_number.interval}" if m.key_number.interval else ""
        print(f"{m.verdict.value}: {m.key_number.name} = {m.key_number.ours}{interval}; "
              f"edits valid {result.efficacy()['valid']}/{len(result.outcomes)} ({result.model_type} family)")
        print(f"wrote {', '.join(SEED_FILES)} to {args.output_dir}")
        return 0

    return guarded(COMMAND, body)

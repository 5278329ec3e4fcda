"""What every claim's command line shares: common flags, checks before any long work, one-line errors.

A claim's ``cli.py`` builds its parser with ``claim_parser``, calls ``prepare`` (which validates the
profile, the device and ``--out`` before a model is loaded) and wraps its body in ``guarded``, so bad
input ends with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from repro.assets import AssetError
from repro.files import check_writable
from repro.profiles import Profile, get_profile
from repro.readers import InputError

EXIT_BAD_INPUT = 2


class UserError(ValueError):
    """Bad input from the user; the message names the input, what is wrong and what to do, on one line."""


def claim_parser(command: str, description: str, *, models: tuple[str, ...], default_model: str,
                 default_out: str) -> argparse.ArgumentParser:
    """``python -m repro <command>`` with the flags every claim takes: --model, --profile, --out, --quiet."""
    p = argparse.ArgumentParser(prog=f"python -m repro {command}", description=description)
    p.add_argument("--model", default=default_model, choices=models, help=f"model key (default: {default_model})")
    p.add_argument("--profile", default=None, help="run profile: cpu or gpu (default: $REPRO_PROFILE or cpu)")
    p.add_argument("--out", type=Path, default=Path(default_out), help=f"output folder (default: {default_out})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def resolve_profile(name: str | None, *, check_device: bool = True) -> Profile:
    """The profile by name (or $REPRO_PROFILE), refusing unknown names and (``check_device``) a gpu
    profile without CUDA."""
    try:
        profile = get_profile(name)
    except ValueError as err:
        raise UserError(str(err)) from None
    if check_device and profile.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError(
                f"profile {profile.name!r} needs a CUDA GPU, but torch {torch.__version__} sees none; "
                "use --profile cpu, or a CUDA build of torch on a GPU machine."
            )
    return profile


def prepare(args: argparse.Namespace) -> Profile:
    """Validate what can be validated before loading a model: the profile, the device and ``--out``."""
    profile = resolve_profile(args.profile)
    try:  # outputs are staged beside --out (repro.files.staged_dir), so its parent must take files
        check_writable(args.out.expanduser().absolute().parent, "--out's parent folder")
    except OSError as err:
        raise UserError(str(err)) from None
    return profile


def guarded(command: str, body: Callable[[], int]) -> int:
    """Run ``body``; a known kind of bad input becomes one line on stderr and exit status 2."""
    try:
        return body()
    except (UserError, AssetError, InputError) as err:
        print(f"python -m repro {command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"python -m repro {command}: interrupted; no partial output was kept.", file=sys.stderr)
        return 130

"""``python -m repro.ioi``: IOI activation patching on one model, from generated pairs or a pairs file.

Writes into ``--out``: the effect matrices (.npy), a JSON summary with the verdict and its criteria, and
the figures. Exit status 2 with a one-line reason when the model or the pairs are unusable.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from repro.assets import AssetError
from repro.ioi.dataset import CORRUPTIONS, PairFileError, load_pairs
from repro.ioi.experiment import run_ioi, write_results
from repro.ioi.filtering import NoPairsLeft
from repro.models import MODEL_KEYS, load_model
from repro.profiles import get_profile


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m repro.ioi", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m", choices=MODEL_KEYS)
    p.add_argument("--profile", default=None, help="run profile (default: $REPRO_PROFILE or cpu)")
    p.add_argument(
        "--pairs",
        type=Path,
        default=None,
        help="JSON pairs file (normal, corrupted, io, s); default: generate",
    )
    p.add_argument("--n-pairs", type=int, default=None, help="pairs to generate (default: the profile's)")
    p.add_argument("--seed", type=int, default=None, help="generator seed (default: the profile's)")
    p.add_argument(
        "--corruption", choices=CORRUPTIONS, default=None, help="for generated pairs (default: the profile's)"
    )
    p.add_argument("--out", type=Path, default=Path("reports/ioi"), help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    profile = get_profile(args.profile)
    settings = profile.ioi
    overrides = {
        k: v
        for k, v in (("n_pairs", args.n_pairs), ("seed", args.seed), ("corruption", args.corruption))
        if v is not None
    }
    settings = replace(settings, **overrides)
    try:
        pairs = load_pairs(args.pairs) if args.pairs else None
        loaded = load_model(args.model, profile.device, profile.dtype)
        result = run_ioi(loaded, settings, args.out, pairs=pairs, progress=not args.quiet)
    except (AssetError, PairFileError, NoPairsLeft) as err:
        print(f"repro.ioi: {err}", file=sys.stderr)
        return 2
    written = write_results(result, args.out)
    print(json.dumps(result.numbers(), indent=2, default=str))
    print(f"wrote {len(written)} result files and {len(result.figures)} figures to {args.out}")
    return 0

"""``python -m repro ioi``: IOI activation patching on one model, from generated pairs or a pairs file.

Writes into ``--out`` (staged, then renamed into place whole): the effect matrices (.npy), a JSON summary
with the verdict and its criteria, and the figures. Bad input (an unknown profile, an unwritable
``--out`` or one holding files of the user's, ``--n-pairs`` out of range, an unreadable pairs file, pairs
the model gets all wrong) ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from repro.cli import UserError, claim_parser, guarded, int_in, prepare
from repro.files import staged_dir
from repro.ioi.dataset import CORRUPTIONS, MAX_PAIRS, PairFileError
from repro.ioi.filtering import NoPairsLeft
from repro.ioi.pairs_file import load_pairs
from repro.ioi.result import write_results
from repro.ioi.run import run_ioi
from repro.models import MODEL_KEYS, load_model

COMMAND = "ioi"


def parser():
    p = claim_parser(
        COMMAND, __doc__.splitlines()[0], models=MODEL_KEYS, default_model="smollm2-135m", default_out="out/ioi"
    )
    p.add_argument(
        "--pairs", type=Path, default=None, help="JSON pairs file (normal, corrupted, io, s); default: generate"
    )
    p.add_argument("--n-pairs", type=int_in(1, MAX_PAIRS, note="MAX_PAIRS"), default=None,
                   help=f"pairs to generate, 1..{MAX_PAIRS} (default: the profile's)")
    p.add_argument("--pair-seed", type=int_in(0, note="random.Random treats -s as s"), default=None,
                   help="the pair generator's seed, >= 0 (default: the profile's)")
    p.add_argument(
        "--corruption", choices=CORRUPTIONS, default=None, help="for generated pairs (default: the profile's)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        profile = prepare(args)
        overrides = {"n_pairs": args.n_pairs, "pair_seed": args.pair_seed, "corruption": args.corruption}
        settings = replace(profile.ioi, **{k: v for k, v in overrides.items() if v is not None})
        try:
            pairs = load_pairs(args.pairs) if args.pairs else None
            if pairs is not None and len(pairs) > MAX_PAIRS:
                raise UserError(f"{args.pairs} holds {len(pairs)} pairs; a run takes at most {MAX_PAIRS} (MAX_PAIRS).")
            lm = load_model(args.model, profile.device, profile.dtype)
            with staged_dir(args.out) as staging:
                result = run_ioi(lm, replace(profile, ioi=settings), staging, pairs=pairs, progress=not args.quiet)
                written = write_results(result, staging)
        except (PairFileError, NoPairsLeft) as err:
            raise UserError(str(err)) from None
        print(json.dumps(result.numbers(), indent=2, default=str))
        print(f"wrote {len(written)} result files and {len(result.figures)} figures to {args.out}")
        return 0

    return guarded(COMMAND, body)

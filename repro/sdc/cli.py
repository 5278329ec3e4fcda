"""``python -m repro sdc``: one fault experiment, or a sweep from a template, on one model.

One experiment:  python -m repro sdc --model smollm2-135m --location scores --bit 30 --layer 3
A sweep:         python -m repro sdc --model gpt2 --sweep bit_sweep --out out/sdc-gpt2

Each finished configuration goes to the results log (``--log``, default ``<out>-log``) at once, so an
interrupted sweep started again with the same flags resumes where it stopped. ``--out`` receives the
summary (``summary.json``, with the verdict's numbers) and the figures, written whole at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from repro.cli import UserError, claim_parser, guarded, prepare
from repro.files import staged_dir, write_json_atomic
from repro.models import MODEL_KEYS, load_model
from repro.sdc.injection import LOCATIONS, InjectionConfig, check_index, site_shape
from repro.sdc.sweeps import TEMPLATES, ExperimentConfig, ParameterSweepConfig, template


def parser():
    p = claim_parser("sdc", __doc__.splitlines()[0], models=MODEL_KEYS, default_model="smollm2-135m",
                     default_out="out/sdc")
    p.add_argument("--sweep", default=None, help=f"a template ({', '.join(TEMPLATES)}) or a sweep JSON file")
    p.add_argument("--location", choices=list(LOCATIONS), help="one experiment: where to flip")
    p.add_argument("--bit", type=int, action="append", help="one experiment: bit to flip (repeat for several)")
    p.add_argument("--layer", type=int, default=0, help="one experiment: attention layer (default 0)")
    p.add_argument("--seed", type=int, default=0, help="one experiment: seed of the random index (default 0)")
    p.add_argument("--index", default=None, help="one experiment: fixed index in the site's layout, e.g. 0,3,1,5")
    p.add_argument("--probability", type=float, default=1.0, help="one experiment: per-call probability")
    p.add_argument("--window", type=int, default=0, help="one experiment: WikiText-2 window number (default 0)")
    p.add_argument("--log", type=Path, default=None, help="results log folder (default: <out>-log)")
    return p


def _sweep(args, settings) -> ParameterSweepConfig | None:
    if args.sweep is None:
        return None
    try:
        if args.sweep in TEMPLATES:
            return template(args.sweep, n_windows=settings.n_windows)
        path = Path(args.sweep)
        if not path.is_file():
            raise UserError(f"--sweep {args.sweep!r} is neither a template ({', '.join(TEMPLATES)}) nor a file.")
        return ParameterSweepConfig.load(path)
    except ValueError as err:
        raise UserError(str(err)) from None


def _one(args, dtype: torch.dtype) -> ExperimentConfig:
    if args.location is None or not args.bit:
        raise UserError("give --sweep TEMPLATE, or --location and --bit for one experiment.")
    try:
        index = tuple(int(i) for i in args.index.split(",")) if args.index else None
    except ValueError:
        raise UserError(f"--index {args.index!r}: expected comma-separated integers, e.g. 0,3,1,5.") from None
    try:
        InjectionConfig(args.location, args.layer, tuple(args.bit), index, args.probability).check(dtype, 10**9)
    except ValueError as err:
        raise UserError(str(err)) from None
    return ExperimentConfig(args.location, tuple(args.bit), args.seed, args.layer, args.window, index,
                            args.probability)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from repro.sdc.run import run_sdc

        profile = prepare(args)
        settings = profile.sdc
        sweep = _sweep(args, settings)
        one = None if sweep else _one(args, getattr(torch, profile.dtype))
        if one and not 0 <= one.window < 10_000:
            raise UserError(f"--window {one.window} must be in 0..9999.")
        lm = load_model(args.model, profile.device, profile.dtype)
        adapter = lm.adapter
        if one:
            if not 0 <= one.layer < adapter.n_layers:
                raise UserError(f"--layer {one.layer} is outside 0..{adapter.n_layers - 1} for {args.model}.")
            if one.index is not None:
                try:
                    check_index(one.index, site_shape(adapter, one.location, settings.window_len))
                except ValueError as err:
                    raise UserError(f"--index: {err} (the {one.location} site of one window)") from None
        try:
            sweep and sweep.configs(adapter.n_layers)
        except ValueError as err:
            raise UserError(str(err)) from None
        log = args.log or args.out.with_name(args.out.name + "-log")
        with staged_dir(args.out) as staging:
            result = run_sdc(lm, settings, staging, log_dir=log, sweep=sweep, configs=[one] if one else None,
                             progress=not args.quiet)
            summary = {**result.measurement().numbers, "verdict": result.verdict().value,
                       "recall": result.recall, "clean_false_positives": result.clean_flagged}
            if one:
                summary["fault"] = result.faults[0]
            write_json_atomic(staging / "summary.json", summary)
        print(json.dumps(summary["fault"] if one else {k: summary[k] for k in
                         ("verdict", "recall", "faults_n", "faults_harmful", "faults_detected",
                          "clean_false_positives", "escapes")}, indent=2, default=str))
        print(f"wrote {args.out}/summary.json and {len(result.figures)} figures; results log: {log}")
        return 0

    return guarded("sdc", body)

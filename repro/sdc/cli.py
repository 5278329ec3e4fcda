"""``python -m repro sdc``: one fault experiment, or a sweep from a template or a file, on one model; the
sweep in this process, on a local Dask cluster (``--workers N``) or on a running one (``--scheduler``).

One experiment:  python -m repro sdc --model smollm2-135m --location scores --bit 30 --layer 3
A sweep:         python -m repro sdc --model gpt2 --sweep bit_sweep --out out/sdc-gpt2
On Dask:         python -m repro sdc --sweep stratified --workers 2 ...   (or --scheduler tcp://host:8786)

Each finished configuration goes to the results log (``--log``, default ``<out>-log``) at once, so an
interrupted sweep started again with the same command resumes where it stopped. The log is tied to the
model, dtype, window length, profile and code version that wrote it: another setting is refused with one
line (``--fresh-log`` starts it over). ``--out`` receives the summary (``summary.json``, with the verdict's
numbers) and the figures, written whole at the end.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch

from repro.cli import UserError, claim_parser, guarded, prepare
from repro.files import staged_dir, write_json_atomic
from repro.models import MODEL_KEYS, load_model
from repro.sdc.injection import LOCATIONS, InjectionConfig, check_bit, check_index, site_shape
from repro.sdc.sweeps import SETTINGS_FILE, TEMPLATES, ExperimentConfig, ParameterSweepConfig

MAX_WORKERS = 64


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
    p.add_argument("--fresh-log", action="store_true", help="start over a results log written with other settings")
    p.add_argument("--workers", type=int, default=0, help="run the sweep on a local Dask cluster of N worker processes "
                   "(default 0: in this process)")
    p.add_argument("--scheduler", default=None, help="run the sweep on the Dask cluster at this address, "
                   "e.g. tcp://host:8786")
    p.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for --scheduler (default 10)")
    return p


def _sweep(args, dtype: torch.dtype) -> str | ParameterSweepConfig | None:
    """The template's name, or the sweep file read and checked (bits against the dtype), before any model."""
    if args.sweep is None:
        return None
    if args.sweep in TEMPLATES:
        return args.sweep
    path = Path(args.sweep)
    if not path.is_file():
        raise UserError(f"--sweep {args.sweep!r} is neither a template ({', '.join(TEMPLATES)}) nor a file.")
    sweep = ParameterSweepConfig.load(path)
    try:
        for bit in sweep.bits:
            check_bit(bit, dtype)
    except ValueError as err:
        raise UserError(f"sweep file {path}: field 'bits': {err}") from None
    return sweep


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
    return ExperimentConfig("uniform", args.location, tuple(args.bit), args.seed, args.layer, args.window, index,
                            args.probability)


def _check_flags(args) -> None:
    if args.scheduler and not args.scheduler.startswith(("tcp://", "tls://")):
        raise UserError(f"--scheduler {args.scheduler!r}: expected an address like tcp://host:8786")
    if not 0 <= args.workers <= MAX_WORKERS:
        raise UserError(f"--workers {args.workers} must be in 0..{MAX_WORKERS}.")
    if args.scheduler and args.workers:
        raise UserError("give --scheduler (a running cluster) or --workers (a local one), not both.")
    if not 0 < args.connect_timeout <= 600:
        raise UserError(f"--connect-timeout {args.connect_timeout} must be in (0, 600] seconds.")


def _cluster(args):
    """A Dask client for the sweep (or a null context: in this process)."""
    if not (args.scheduler or args.workers):
        return nullcontext(None)
    from repro.sdc.distributed import connect, local_cluster

    return local_cluster(args.workers) if args.workers else connect(args.scheduler, timeout=args.connect_timeout)


def _configs(args, lm, settings, sweep, one):
    """The sweep for this model (a template is sized by the profile and the model's depth), or the one
    experiment, checked against the model."""
    from repro.sdc.run import sweep_for

    adapter = lm.adapter
    if isinstance(sweep, str):
        sweep = sweep_for(replace(settings, sweep=sweep), adapter.n_layers)
    if one:
        if not 0 <= one.layer < adapter.n_layers:
            raise UserError(f"--layer {one.layer} is outside 0..{adapter.n_layers - 1} for {args.model}.")
        if one.index is not None:
            try:
                check_index(one.index, site_shape(adapter, one.location, settings.window_len))
            except ValueError as err:
                raise UserError(f"--index: {err} (the {one.location} site of one window)") from None
        return None, [one]
    try:
        sweep.configs(adapter.n_layers)
    except ValueError as err:
        raise UserError(str(err)) from None
    return sweep, None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs: list[Path] = []  # the results log, once the command knows it (for the Ctrl-C message)

    def body() -> int:
        from repro.sdc.run import model_for, run_sdc

        _check_flags(args)
        profile = prepare(args)
        settings = profile.sdc
        dtype = getattr(torch, settings.dtype or profile.dtype)
        sweep = _sweep(args, dtype)
        one = None if sweep else _one(args, dtype)
        if one and not 0 <= one.window < 10_000:
            raise UserError(f"--window {one.window} must be in 0..9999.")
        log = args.log or args.out.with_name(args.out.name + "-log")
        logs.append(log)
        if log.exists() and not log.is_dir():
            raise UserError(f"--log {log} is a file; give a folder (new, empty, or an earlier results log).")
        with _cluster(args) as client:  # an unreachable scheduler fails here, before any model loads
            lm = model_for(load_model(args.model, profile.device, profile.dtype), profile)
            sweep, configs = _configs(args, lm, settings, sweep, one)
            with staged_dir(args.out) as staging:
                result = run_sdc(lm, profile, staging, log_dir=log, sweep=sweep, configs=configs,
                                 progress=not args.quiet, client=client, fresh_log=args.fresh_log)
                measurement = result.measurement()
                summary = {**measurement.numbers, "verdict": measurement.verdict.value}
                if one:
                    summary["fault"] = result.faults[0]
                write_json_atomic(staging / "summary.json", summary)
        t = result.totals
        print(json.dumps(summary["fault"] if one else {
            "verdict": measurement.verdict.value, "faults": t["n"], "harmful": t["harmful"],
            "nontrivial": t["nontrivial"], **{k: str(v) for k, v in measurement.numbers.items() if ": " in k},
            "sweep_s": round(result.seconds.get("sweep", 0), 1)}, indent=2, default=str))
        print(f"wrote {args.out}/summary.json and {len(result.figures)} figures; results log: {log}")
        return 0

    return guarded("sdc", body, on_interrupt=lambda: _kept(logs[0]) if logs else "")


def _kept(log: Path) -> str:
    kept = len([p for p in log.glob("*.json") if p.name != SETTINGS_FILE]) if log.is_dir() else 0
    return (f"the {kept} finished faults are kept in the results log {log}; rerun the same command to resume "
            "(--out was left as it was)")

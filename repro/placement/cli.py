"""``python -m repro hybrid``: the IOI pipeline local, remote and hybrid on Dask over a shaped, swept link.

Writes into ``--out``: the seed's three timing files (``timing_local_all.json``, ``timing_remote_all.json``,
``timing_hybrid.json``) per measured rate, the combined table, the cost model's predictions for all 16
placements and its errors where they were run, the placement map, a Dask performance report per rate, the
figures and a JSON summary with the verdict, its parts and gates. ``--placement`` runs one placement instead
(a mode name, a label such as LRRL, or a placement file) and writes its timing. ``--scheduler
tcp://host:8786`` uses an existing Dask cluster whose workers offer the resources ``local=1`` and
``remote=1``; one that does not answer within ``--connect-timeout`` is one line and exit status 2.
"""

from __future__ import annotations

import json
from dataclasses import replace

from repro.cli import UserError, claim_parser, guarded, prepare
from repro.files import staged_dir, write_json_atomic
from repro.placement.placement import STAGES, PlacementError, resolve_placement

MODELS = ("smollm2-135m", "gpt2-random", "gpt2")
MAX_PAIRS = 1000  # as ioi's: more would run for hours before saying anything
RANGES = {  # flag: (low, high) accepted, both inclusive
    "n_pairs": (1, MAX_PAIRS), "rounds": (2, 100), "local_rounds": (2, 100), "local_slowdown": (1.0, 20.0),
    "local_threads": (1, 64), "remote_threads": (1, 64), "connect_timeout_s": (0.5, 120.0),
}


def parser():
    p = claim_parser("hybrid", __doc__.splitlines()[0], models=MODELS, default_model="smollm2-135m",
                     default_out="out/hybrid")
    p.add_argument("--placement", default=None,
                   help="run only this placement: local, remote, hybrid, a label like LRRL, or a JSON file")
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--connect-timeout", dest="connect_timeout_s", type=float, default=None,
                   help="seconds an existing scheduler has to answer (default: the profile's, 10)")
    p.add_argument("--rates", default=None, help="tbf rates in Mbit/s, comma-separated; the first decides "
                                                 "(default: the profile's, 0.4,20)")
    p.add_argument("--rounds", type=int, default=None, help="Remote/Hybrid rounds per rate, ABBA (default: 6)")
    p.add_argument("--local-rounds", type=int, default=None, help="rounds that also run Local (default: 3)")
    p.add_argument("--n-pairs", type=int, default=None, help=f"IOI pairs, 1..{MAX_PAIRS} (default: the profile's)")
    p.add_argument("--local-slowdown", type=float, default=None,
                   help="the workstation's CFS quota as 1/x of a core on its throttled stages (default: 3)")
    p.add_argument("--throttled-stages", default=None,
                   help=f"comma-separated stages the quota applies to (default: collect,patch; any of {','.join(STAGES)})")
    p.add_argument("--local-threads", type=int, default=None, help="torch threads of the local worker (default: 1)")
    p.add_argument("--remote-threads", type=int, default=None, help="torch threads of the remote worker (default: 1)")
    p.add_argument("--remote-device", choices=("cpu", "cuda"), default=None,
                   help="device of the remote worker's tasks (default: the profile's)")
    p.add_argument("--loopback", action="store_true", help="no namespaces: loopback plus the analytic link model")
    return p


def settings_from(args, settings):
    """The profile's settings with the flags applied, each checked before any work."""
    for name, (low, high) in RANGES.items():
        value = getattr(args, name)
        if value is not None:
            if not low <= value <= high:
                flag = "--connect-timeout" if name == "connect_timeout_s" else f"--{name.replace('_', '-')}"
                raise UserError(f"{flag} {value} is out of range; choose {low}..{high}.")
            settings = replace(settings, **{name: value})
    if args.rates is not None:
        try:
            rates = tuple(float(r) for r in args.rates.split(","))
        except ValueError:
            raise UserError(f"--rates {args.rates!r}: expected Mbit/s numbers separated by commas, e.g. 0.4,20") from None
        if not rates or not all(0.01 <= r <= 10_000 for r in rates):
            raise UserError(f"--rates {args.rates!r}: every rate must be within 0.01..10000 Mbit/s.")
        settings = replace(settings, rates_mbit=rates)
    if args.throttled_stages is not None:
        stages = tuple(s.strip() for s in args.throttled_stages.split(",") if s.strip())
        unknown = [s for s in stages if s not in STAGES]
        if not stages or unknown:
            raise UserError(f"--throttled-stages {args.throttled_stages!r}: name stages among {', '.join(STAGES)}.")
        settings = replace(settings, throttled_stages=stages)
    if settings.local_rounds > settings.rounds:
        raise UserError(f"--local-rounds {settings.local_rounds} exceeds --rounds {settings.rounds}.")
    if args.remote_device:
        settings = replace(settings, remote_device=args.remote_device)
    return settings


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        profile = prepare(args)
        settings = settings_from(args, profile.hybrid)
        if args.scheduler:
            from repro.placement.engine import probe

            if not args.scheduler.startswith(("tcp://", "tls://")):
                raise UserError(f"--scheduler {args.scheduler!r}: expected an address like tcp://host:8786")
            why = probe(args.scheduler, settings.connect_timeout_s)  # before any model loads: seconds, not minutes
            if why is not None:
                raise UserError(f"cannot reach the Dask scheduler at {args.scheduler} within "
                                f"{settings.connect_timeout_s:g} s ({why}); check the address, or raise --connect-timeout")
        try:
            only = resolve_placement(args.placement) if args.placement else None
        except PlacementError as err:
            raise UserError(str(err)) from None
        from repro.models import load_model
        from repro.placement.engine import ClusterUnreachable

        lm = load_model(args.model, "cpu", profile.dtype)  # the tokenizer; the workers load their own copies
        try:
            with staged_dir(args.out) as out:
                summary = _run(lm, settings, only, out, args)
        except ClusterUnreachable as err:
            raise UserError(str(err)) from None
        print(json.dumps({k: v for k, v in summary.items() if k not in ("per stage and mode (medians)", "stages")},
                         indent=2, default=str))
        print(f"wrote {args.out}")
        return 0

    return guarded("hybrid", body)


def _run(lm, settings, only, out, args) -> dict:
    if only is not None:
        from repro.placement.run import run_one

        summary = run_one(lm, settings, only, scheduler=args.scheduler, shaped=not args.loopback)
        write_json_atomic(out / f"timing_{only.label}.json", summary)
        return summary
    from repro.placement.run import run_hybrid

    result = run_hybrid(lm, settings, out, scheduler=args.scheduler, shaped=not args.loopback,
                        progress=not args.quiet)
    ruling = result.ruling
    summary = {"verdict": ruling.verdict.value, "decided by": ruling.decided_by,
               "gates": {g.name: {"passed": g.passed, "detail": g.detail} for g in ruling.gates}, **result.numbers()}
    write_json_atomic(out / "summary.json", summary)
    return summary

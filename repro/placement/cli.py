"""``python -m repro hybrid``: the IOI pipeline local, remote and hybrid on Dask over a shaped link.

Writes into ``--out``: the seed's three timing files (``timing_local_all.json``, ``timing_remote_all.json``,
``timing_hybrid.json``), the combined table, the optimiser's predictions for all 16 placements, the figures
and a JSON summary with both scenarios' verdicts. ``--placement`` runs one placement instead (a mode name, a
label such as LRRL, or a placement file) and writes its timing. ``--scheduler tcp://host:8786`` uses an
existing Dask cluster whose workers offer the resources ``local=1`` and ``remote=1``.
"""

from __future__ import annotations

import json
from dataclasses import replace

from repro.cli import UserError, claim_parser, guarded, prepare
from repro.files import staged_dir, write_json_atomic
from repro.placement.placement import PlacementError, resolve_placement

MODELS = ("smollm2-135m", "gpt2-random", "gpt2")


def parser():
    p = claim_parser("hybrid", __doc__.splitlines()[0], models=MODELS, default_model="smollm2-135m",
                     default_out="out/hybrid")
    p.add_argument("--placement", default=None,
                   help="run only this placement: local, remote, hybrid, a label like LRRL, or a JSON file")
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--rate-mbit", type=float, default=None, help="link rate for tbf (default: the profile's)")
    p.add_argument("--repeats", type=int, default=None, help="runs per mode (default: the profile's)")
    p.add_argument("--n-pairs", type=int, default=None, help="IOI pairs (default: the profile's)")
    p.add_argument("--remote-device", choices=("cpu", "cuda"), default=None,
                   help="device of the remote worker's tasks (default: the profile's)")
    p.add_argument("--loopback", action="store_true", help="no namespaces: loopback plus the analytic link model")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        profile = prepare(args)
        settings = profile.hybrid
        for name in ("rate_mbit", "repeats", "n_pairs"):
            value = getattr(args, name)
            if value is not None:
                if value <= 0:
                    raise UserError(f"--{name.replace('_', '-')} must be positive, got {value}")
                settings = replace(settings, **{name: value})
        if args.remote_device:
            settings = replace(settings, remote_device=args.remote_device)
        if args.scheduler and not args.scheduler.startswith(("tcp://", "tls://")):
            raise UserError(f"--scheduler {args.scheduler!r}: expected an address like tcp://host:8786")
        try:
            only = resolve_placement(args.placement) if args.placement else None
        except PlacementError as err:
            raise UserError(str(err)) from None
        from repro.models import load_model

        lm = load_model(args.model, "cpu", profile.dtype)  # the tokenizer; the workers load their own copies
        with staged_dir(args.out) as out:
            if only is not None:
                summary = _one(lm, settings, only, args)
                write_json_atomic(out / f"timing_{only.label}.json", summary)
            else:
                from repro.placement.run import run_hybrid

                result = run_hybrid(lm, settings, out, scheduler=args.scheduler, shaped=not args.loopback,
                                    progress=not args.quiet)
                summary = {"verdict": result.measured.verdict, **result.numbers()}
                write_json_atomic(out / "summary.json", summary)
        print(json.dumps({k: v for k, v in summary.items() if k != "per stage and mode (medians)"}, indent=2,
                         default=str))
        print(f"wrote {args.out}")
        return 0

    return guarded("hybrid", body)


def _one(lm, settings, placement, args) -> dict:
    """One placement, once: its per-stage timing."""
    from contextlib import ExitStack

    from repro.ioi.dataset import generate_pairs, tokenize_pairs
    from repro.placement.engine import Cluster, WorkerSpec
    from repro.placement.link import LinkSpec, open_link
    from repro.placement.pipeline import run_pipeline
    from repro.placement.stages import Pairs, Site, warm_up

    pairs = generate_pairs(lm.tokenizer, settings.n_pairs, settings.pair_seed)
    data = Pairs(pairs, tokenize_pairs(lm.tokenizer, pairs))
    sites = {"local": Site(lm.key, settings.local_device, "float32", settings.local_threads),
             "remote": Site(lm.key, settings.remote_device, "float32", settings.remote_threads)}
    with ExitStack() as stack:
        if args.scheduler:
            cluster, kind = stack.enter_context(Cluster.connect(args.scheduler)), f"external cluster {args.scheduler}"
        else:
            link = stack.enter_context(open_link(LinkSpec(settings.rate_mbit), shaped=not args.loopback))
            kind = link.kind
            cluster = stack.enter_context(Cluster(link, WorkerSpec(settings.local_threads),
                                                  WorkerSpec(settings.remote_threads)))
        for s in sites:
            cluster.client.submit(warm_up, sites[s], resources={s: 1}, pure=False).result()
        run = run_pipeline(cluster, placement, data, sites, settings.site_lost_s)
    return {"placement": placement.as_dict(), "label": placement.label, "link": kind, "wall_s": run.wall_s,
            "stages": {s: vars(t) for s, t in run.stages.items()}, "retried": run.retried,
            "logit_diff": {"clean_mean": float(run.effects.clean_ld.mean())}}

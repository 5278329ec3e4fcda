"""Claim 6 end to end: the IOI pipeline's modes paired over a swept link, the cost model, the map, the rule.

``run_hybrid`` is what the claim module calls:

1. generate and tokenize the IOI pairs (the workstation's data);
2. with signal handlers already in place: open the link (two namespaces joined by a tbf-shaped veth pair, or
   the labelled loopback fallback), make the sites differ (cgroups: pinned cores, the workstation's CFS
   quota), start the cluster and load each site's model in a WorkerPlugin (the cold start, its own row);
3. at each rate of ``rates_mbit``: set tbf, measure the link between the site workers, one unrecorded
   warm-up per mode, then the paired rounds (``rounds``), under a Dask performance report;
4. calibrate the cost model on those runs, run the placements that ship the activation cache that it
   predicts fastest at ``validate_rate_mbit``, and report its errors as measured;
5. the map: all 16 placements over rates x slowdowns, and where Hybrid stops being fastest;
6. the seed's own means re-computed through the cost model (a consistency check, not a reproduction);
7. the gates, the parts and the verdict (``verdict``); timing files and figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from dask.sizeof import sizeof
from tqdm.auto import tqdm

from repro.cli import stop_on_signals
from repro.files import figure_path
from repro.ioi.dataset import generate_pairs, tokenize_pairs
from repro.placement import plots
from repro.placement.costmodel import predict
from repro.placement.engine import Cluster, WorkerSpec
from repro.placement.link import Link, LinkSpec, open_link
from repro.placement.optimiser import calibrate, measured_slowdown, rank
from repro.placement.placement import MODES
from repro.placement.result import HybridResult, write_timings
from repro.placement.rounds import run_placements, run_rate
from repro.placement.scenarios import seed_check
from repro.placement.sites import SiteCgroups, Throttle, can_pin
from repro.placement.stages import ModelPlugin, Pairs, Site
from repro.placement.sweep import hybrid_limits, link_at, placement_map
from repro.placement.verdict import gates, rule
from repro.profiles import PROFILES, HybridSettings

UNITS_BY_PROFILE = {name: p.hybrid.rounds for name, p in PROFILES.items()}  # for "what would decide"


def run_hybrid(lm, settings: HybridSettings, out_dir: str | Path, *, scheduler: str | None = None,
               shaped: bool = True, progress: bool = True) -> HybridResult:
    """Claim 6 on one model (see the module docstring); figures, timing files and Dask's reports go to
    ``out_dir``."""
    out_dir = Path(out_dir)
    timing_dir = out_dir / f"{lm.key}-hybrid-timing"
    timing_dir.mkdir(parents=True, exist_ok=True)
    pairs = generate_pairs(lm.tokenizer, settings.n_pairs, settings.pair_seed)
    data = Pairs(pairs, tokenize_pairs(lm.tokenizer, pairs))
    per_rate = settings.rounds * 2 + settings.local_rounds + len(MODES)
    bar = tqdm(total=per_rate * len(settings.rates_mbit) + settings.validate, desc="hybrid", disable=not progress)
    with testbed(lm.key, settings, scheduler=scheduler, shaped=shaped) as bed:
        cluster, link, cgroups, sites = bed.cluster, bed.link, bed.cgroups, bed.sites
        link_kind, sites_kind, throttle = bed.link_kind, bed.sites_kind, bed.throttle
        rates = settings.rates_mbit if link is not None and link.shaped else settings.rates_mbit[:1]
        blocks, reports, report_notes = [], [], []
        for rate in rates:
            name = f"dask-report-{rate:g}mbit.html" if link is not None else "dask-report-as-found.html"
            with _performance_report(cluster, timing_dir / name, reports, report_notes):
                blocks.append(run_rate(cluster, rate if link is not None else None, data, sites, link=link,
                                       cgroups=cgroups, rounds=settings.rounds, local_rounds=settings.local_rounds,
                                       latency_s=settings.latency_ms / 1e3, site_lost_s=settings.site_lost_s,
                                       progress=lambda what: (bar.set_postfix_str(what), bar.update())))
        recorded = [r for b in blocks for r in b.all_runs()]
        costs = calibrate(recorded, sizeof(data))
        efficiency = float(np.median([b.efficiency for b in blocks]))
        fixed_s = float(np.median([b.link.per_transfer_s for b in blocks]))
        expected_link = link_at(settings.validate_rate_mbit, efficiency, fixed_s, settings.latency_ms / 1e3)
        shippers = [p for p in rank(costs, expected_link) if _ships_cache(p.placement)][: settings.validate]
        validation_block, validation_runs = run_placements(
            cluster, [p.placement for p in shippers], settings.validate_rate_mbit if link is not None else None,
            data, sites, link=link, cgroups=cgroups, latency_s=settings.latency_ms / 1e3,
            site_lost_s=settings.site_lost_s)
        bar.update(len(validation_runs))
        cluster_settings = dict(cluster.settings)
    bar.close()

    slowdown = measured_slowdown(costs, settings.throttled_stages)
    validation = [_validation_row(predict(r.placement, costs, validation_block.link), r, validation_block.rate_mbit,
                                  ships_cache=True) for r in validation_runs]
    for block in blocks:  # the named modes at each rate (in-sample: the model was calibrated on these runs)
        for mode in MODES:
            measured = float(np.median([r.wall_s for r in block.runs(mode)]))
            validation.append(_validation_row(predict(MODES[mode], costs, block.link), measured, block.rate_mbit,
                                              ships_cache=False))
    all_runs = recorded + validation_runs
    reference = blocks[0].runs("local")[0].effects
    max_effect = max(float(np.abs(r.effects.heads - reference.heads).max()) for r in all_runs)
    retried = sum(r.retried for r in all_runs)
    stated = settings.local_slowdown if throttle is not None else None
    link_mode = "external" if link is None else "shaped" if link.shaped else "loopback"
    gate_list = gates(blocks, link_mode=link_mode, link_kind=link_kind, stated_slowdown=stated,
                      slowdown=slowdown, max_effect_diff=max_effect, retried=retried)
    ruling, parts_by_rate = rule(blocks, gate_list, UNITS_BY_PROFILE)
    map_args = {"efficiency": efficiency, "per_transfer_s": fixed_s, "latency_s": settings.latency_ms / 1e3}
    result = HybridResult(
        model=lm.key, settings=settings, link_kind=link_kind, sites_kind=sites_kind, cluster_settings=cluster_settings,
        cold_start=bed.cold_start, n_pairs=len(pairs), n_kept=reference.n_kept,
        clean_ld_mean=float(reference.clean_ld.mean()), corrupted_ld_mean=float(reference.corrupted_ld.mean()),
        blocks=blocks, costs=costs, slowdown=slowdown, stated_slowdown=stated,
        rankings={b.rate_mbit: rank(costs, b.link) for b in blocks},
        validation_block=validation_block, validation_runs=validation_runs, validation=validation,
        placement_map=placement_map(costs, settings.throttled_stages, **map_args),
        limits=hybrid_limits(costs, settings.throttled_stages, slowdown, **map_args),
        seed=seed_check(costs.output_bytes, costs.input_bytes),
        max_effect_diff=max_effect,
        max_logit_diff_diff=max(float(np.abs(r.effects.clean_ld - reference.clean_ld).max()) for r in all_runs),
        retried=retried, gates=gate_list, ruling=ruling, parts_by_rate=parts_by_rate, reports=reports,
        report_notes=report_notes,
    )
    key = lm.key
    result.figures = {
        "stage_times": plots.plot_mode_bars(result.stage_table(), result.model,
                                            figure_path(out_dir, key, "hybrid", "stage-times")),
        "map": plots.plot_placement_map(result.placement_map, result.measured_points(), result.model,
                                        figure_path(out_dir, key, "hybrid", "placement-map")),
        "optimiser": plots.plot_optimiser(result.prediction_rows(), figure_path(out_dir, key, "hybrid", "optimiser")),
        "heatmap": plots.save_png(blocks[0].runs("hybrid")[0].figure, figure_path(out_dir, key, "hybrid", "heatmap")),
    }
    result.timing_files = write_timings(result, timing_dir)
    return result


@dataclass
class Testbed:
    cluster: Cluster
    link: Link | None
    cgroups: SiteCgroups | None
    sites: dict[str, Site]
    throttle: Throttle | None
    link_kind: str
    sites_kind: str
    cold_start: dict


@contextmanager
def testbed(model: str, settings: HybridSettings, *, scheduler: str | None = None,
            shaped: bool = True) -> Iterator[Testbed]:
    """The two sites, ready: signal handlers first (a signal at any later point unwinds all of it), then the
    link at the first rate, the cgroups, the cluster, and each site's model loaded by its worker's plugin."""
    with stop_on_signals(), ExitStack() as stack:
        link, cgroups = None, None
        if scheduler:
            link_kind, sites_kind = f"external cluster at {scheduler} (link as found)", "as found"
            cluster = stack.enter_context(Cluster.connect(scheduler, settings.connect_timeout_s))
        else:
            link = stack.enter_context(open_link(LinkSpec(settings.rates_mbit[0], settings.latency_ms), shaped=shaped))
            link_kind, why_not = link.kind, can_pin()
            if why_not is None:
                cgroups = stack.enter_context(SiteCgroups(settings.local_slowdown))
                sites_kind = cgroups.describe()
            else:
                sites_kind = (f"not pinned or throttled ({why_not}): local {settings.local_threads} thread(s), "
                              f"remote {settings.remote_threads}")
            cluster = stack.enter_context(Cluster(link, WorkerSpec(settings.local_threads),
                                                  WorkerSpec(settings.remote_threads), cgroups=cgroups))
        throttle = cgroups.throttle(settings.throttled_stages) if cgroups else None
        sites = {"local": Site(model, settings.local_device, "float32", settings.local_threads, throttle),
                 "remote": Site(model, settings.remote_device, "float32", settings.remote_threads)}
        cold_start = cluster.load_models(ModelPlugin(sites))
        yield Testbed(cluster, link, cgroups, sites, throttle, link_kind, sites_kind, cold_start)


def run_one(lm, settings: HybridSettings, placement, *, scheduler: str | None = None, shaped: bool = True) -> dict:
    """One placement, once, at the first rate (after one unrecorded warm-up run): its per-stage timing."""
    pairs = generate_pairs(lm.tokenizer, settings.n_pairs, settings.pair_seed)
    data = Pairs(pairs, tokenize_pairs(lm.tokenizer, pairs))
    with testbed(lm.key, settings, scheduler=scheduler, shaped=shaped) as bed:
        rate = settings.rates_mbit[0] if bed.link is not None else None
        block, (_, run) = run_placements(bed.cluster, [placement, placement], rate, data, bed.sites, link=bed.link,
                                         cgroups=bed.cgroups, latency_s=settings.latency_ms / 1e3,
                                         site_lost_s=settings.site_lost_s)
    return {"placement": placement.as_dict(), "label": placement.label, "link": bed.link_kind,
            "sites": bed.sites_kind, "rate_mbit": block.rate_mbit,
            "link_measured_mbit": block.link.bytes_per_s * 8 / 1e6, "cold_start": bed.cold_start,
            "wall_s": run.wall_s, "stages": {s: vars(t) for s, t in run.stages.items()}, "retried": run.retried,
            "veth_bytes": run.veth_bytes, "dask_bytes": run.dask_bytes(), "machine": run.machine,
            "logit_diff": {"clean_mean": float(run.effects.clean_ld.mean())}}


def _ships_cache(placement) -> bool:
    return placement.site("collect") != placement.site("patch")


def _validation_row(prediction, measured, rate_mbit: float, *, ships_cache: bool) -> dict:
    wall = measured if isinstance(measured, float) else measured.wall_s
    return {"placement": prediction.placement.label, "name": prediction.placement.name, "rate_mbit": rate_mbit,
            "predicted_s": prediction.wall_s, "measured_s": wall, "error": (prediction.wall_s - wall) / wall,
            "ships_cache": ships_cache, "in_sample": not ships_cache}


@contextmanager
def _performance_report(cluster: Cluster, path: Path, written: list[Path], notes: list[str]) -> Iterator[None]:
    """Dask's own HTML report of a block of work (task stream, profiles, transfers), saved beside the timings.
    The scheduler renders it with bokeh; one without bokeh (a user's) costs the report, not the run."""
    from distributed import performance_report

    report = performance_report(filename=str(path))
    with cluster.client.as_current():
        report.__enter__()
        yield
        try:
            report.__exit__(None, None, None)
        except Exception as err:  # the block's own errors propagate above; only the report is optional
            notes.append(f"no Dask performance report for {path.name}: {type(err).__name__}: {err}")
        else:
            written.append(path)

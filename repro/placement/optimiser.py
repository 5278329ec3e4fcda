"""The optimiser: predict all 16 placements with the cost model, rank them, and check the best for real.

Calibration uses only what the named modes measured: Local gives every stage's local compute time, Remote
every stage's remote one, and the task stream gives each stage's output bytes; Dask's per-stage overhead
and its fixed cost per transfer are medians of what the runs showed beyond compute and the link's rate.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from repro.placement.costmodel import LinkModel, Prediction, StageCosts, predict
from repro.placement.link import LinkSpec
from repro.placement.pipeline import PipelineRun
from repro.placement.placement import SITES, STAGES, all_placements


def calibrate(runs: Iterable[PipelineRun], input_bytes: float, spec: LinkSpec) -> tuple[StageCosts, LinkModel]:
    """Stage costs and the link model from measured runs (medians over the runs that have each number)."""
    runs = list(runs)
    compute = {}
    for stage in STAGES:
        compute[stage] = {}
        for site in SITES:
            seen = [r.stages[stage].compute_s for r in runs if r.placement.site(stage) == site]
            if not seen:
                raise ValueError(f"no run placed {stage!r} on the {site} site; run the Local and Remote modes first")
            compute[stage][site] = statistics.median(seen)
    output = {stage: statistics.median(r.stages[stage].output_bytes for r in runs) for stage in STAGES}
    overhead = statistics.median(s.overhead_s for r in runs for s in r.stages.values())
    fixed = [t["seconds"] - t["bytes"] / spec.bytes_per_s for r in runs for s in r.stages.values() for t in s.transfers]
    link = LinkModel(spec.bytes_per_s, spec.latency_ms / 1e3, max(0.0, statistics.median(fixed)) if fixed else 0.0)
    return StageCosts(compute, output, input_bytes, overhead), link


def rank(costs: StageCosts, link: LinkModel) -> list[Prediction]:
    """All 16 placements, fastest predicted first (ties: local-first order)."""
    return sorted((predict(p, costs, link) for p in all_placements()), key=lambda p: p.wall_s)


def prediction_error(predicted_s: float, measured_s: float) -> float:
    """Relative error of a prediction, signed: positive when the model predicted too slow."""
    return (predicted_s - measured_s) / measured_s

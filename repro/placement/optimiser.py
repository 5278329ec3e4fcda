"""The optimiser: calibrate the cost model from measured runs, predict all 16 placements, rank them.

Calibration uses only what the named modes measured: Local gives every stage's local compute time, Remote
every stage's remote one, and the task stream gives each stage's output bytes; Dask's per-stage overhead is
the median of what the runs showed beyond compute and the link. The link itself is measured between the
site workers at each rate (``rounds.measure_link``), never taken from the tbf setting.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from repro.placement.costmodel import LinkModel, Prediction, StageCosts, predict
from repro.placement.pipeline import PipelineRun
from repro.placement.placement import LOCAL, REMOTE, SITES, STAGES, all_placements


def calibrate(runs: Iterable[PipelineRun], input_bytes: float) -> StageCosts:
    """Stage costs from measured runs (medians over the runs that have each number)."""
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
    return StageCosts(compute, output, input_bytes, overhead)


def measured_slowdown(costs: StageCosts, stages: tuple[str, ...]) -> float:
    """How many times slower the workstation was than the remote site on ``stages`` (median compute times)."""
    return sum(costs.compute_s[s][LOCAL] for s in stages) / sum(costs.compute_s[s][REMOTE] for s in stages)


def rank(costs: StageCosts, link: LinkModel) -> list[Prediction]:
    """All 16 placements, fastest predicted first (ties: local-first order)."""
    return sorted((predict(p, costs, link) for p in all_placements()), key=lambda p: p.wall_s)


def prediction_error(predicted_s: float, measured_s: float) -> float:
    """Relative error of a prediction, signed: positive when the model predicted too slow."""
    return (predicted_s - measured_s) / measured_s

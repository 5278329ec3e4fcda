"""The link and the sites as variables: all 16 placements predicted over link rates x workstation slowdowns.

The cost model is calibrated on the measured runs; a cell of the map swaps in another link (the tbf rate
times the measured efficiency, with the measured fixed cost per transfer) and another workstation (its
throttled stages ``slowdown`` times the remote site's time). Each cell names the fastest placement and
Hybrid's predicted margin over the faster of Local and Remote. ``hybrid_limits`` reads off the finding: at
the measured slowdown, up to which rate Hybrid is predicted faster than both, and faster by the claim's 5%.
"""

from __future__ import annotations

import math

import numpy as np

from repro.placement.costmodel import LinkModel, StageCosts, predict, with_slowdown
from repro.placement.placement import MODES, all_placements

MAP_RATES = tuple(float(r) for r in np.geomspace(0.05, 2000, 47))  # Mbit/s, 10 per decade
MAP_SLOWDOWNS = tuple(float(s) for s in np.round(np.arange(1.0, 8.01, 0.25), 2))


def link_at(rate_mbit: float, efficiency: float, per_transfer_s: float, latency_s: float = 0.0) -> LinkModel:
    return LinkModel(rate_mbit * 1e6 / 8 * efficiency, latency_s, per_transfer_s)


def cell(costs: StageCosts, link: LinkModel) -> dict:
    """Under one link and workstation: the fastest of all 16 placements, and Hybrid's margin over the faster
    of the seed's other two modes, ``ln(min(W_Local, W_Remote) / W_Hybrid)`` (the claim compares the modes)."""
    walls = {p.label: predict(p, costs, link).wall_s for p in all_placements()}
    others = min(walls[MODES[m].label] for m in ("local", "remote"))
    return {"best": min(walls, key=walls.get), "hybrid_margin": math.log(others / walls[MODES["hybrid"].label])}


def placement_map(costs: StageCosts, stages: tuple[str, ...], *, efficiency: float, per_transfer_s: float,
                  latency_s: float = 0.0, rates=MAP_RATES, slowdowns=MAP_SLOWDOWNS) -> dict:
    """``{"rates", "slowdowns", "best": [slowdown][rate] label, "hybrid_margin": [slowdown][rate]}``."""
    best, margin = [], []
    for s in slowdowns:
        at = with_slowdown(costs, s, stages)
        row = [cell(at, link_at(r, efficiency, per_transfer_s, latency_s)) for r in rates]
        best.append([c["best"] for c in row])
        margin.append([c["hybrid_margin"] for c in row])
    return {"rates": list(rates), "slowdowns": list(slowdowns), "best": best, "hybrid_margin": margin}


def hybrid_limits(costs: StageCosts, stages: tuple[str, ...], slowdown: float, *, efficiency: float,
                  per_transfer_s: float, latency_s: float = 0.0, margin: float = math.log(1.05),
                  rates=MAP_RATES) -> dict:
    """At ``slowdown``: the highest map rate at which Hybrid is predicted faster than Local and Remote, and
    faster by ``margin`` (None: at no rate of the map); and the fastest of all 16 at the lowest and highest."""
    at = with_slowdown(costs, slowdown, stages)
    cells = [(r, cell(at, link_at(r, efficiency, per_transfer_s, latency_s))) for r in rates]
    fastest = [r for r, c in cells if c["hybrid_margin"] > 0]
    by_margin = [r for r, c in cells if c["hybrid_margin"] > margin]
    return {"slowdown": slowdown, "fastest_up_to_mbit": max(fastest) if fastest else None,
            "by_5pct_up_to_mbit": max(by_margin) if by_margin else None,
            "best_at_lowest_rate": cells[0][1]["best"], "best_at_highest_rate": cells[-1][1]["best"]}

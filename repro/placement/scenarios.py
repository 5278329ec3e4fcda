"""A consistency check of the seed's own means (a re-computation, not a reproduction).

The seed gives mean seconds per module for each mode, and says network I/O is about 20% of Remote's time.
Its Local column is each module's local compute. Its Remote column is remote compute plus that module's
transfers, so the link is chosen to make Remote's transfers (the pairs up to Filter, the figure down from
Plot: the bytes measured here) exactly 20% of Remote's total, and those seconds are taken off Filter's and
Plot's Remote numbers to leave their remote compute. Collect and Patch move nothing in Remote mode. With no
latency and no Dask overhead, every placement then follows from the cost model.

Nothing here is measured: the Hybrid column the check predicts is the seed's Local Filter/Plot plus its
Remote Collect/Patch, and the 20% share is an input. It says whether the seed's table is consistent with
itself and with its stated saving, and the report keeps it out of the reproduced / not-reproduced verdicts.
"""

from __future__ import annotations

from repro.placement.costmodel import LinkModel, StageCosts, predict
from repro.placement.optimiser import rank
from repro.placement.placement import MODES, STAGES
from repro.placement.verdict import SEED_NETWORK_SHARE, SEED_SECONDS, seed_arithmetic, seed_totals

TITLE = "consistency check of the seed's own means (a re-computation)"


def seed_costs(output_bytes: dict[str, float], input_bytes: float) -> tuple[StageCosts, LinkModel]:
    """Stage costs and link for the seed's table, with the bytes this run measured."""
    network_s = SEED_NETWORK_SHARE * seed_totals()["remote"]
    moved = input_bytes + output_bytes[STAGES[-1]]  # Remote mode: pairs up, figure down
    link = LinkModel(bytes_per_s=moved / network_s)
    compute = {s: {"local": SEED_SECONDS[s]["local"], "remote": SEED_SECONDS[s]["remote"]} for s in STAGES}
    compute[STAGES[0]]["remote"] -= link.transfer_s(input_bytes)
    compute[STAGES[-1]]["remote"] -= link.transfer_s(output_bytes[STAGES[-1]])
    return StageCosts(compute, dict(output_bytes), input_bytes), link


def seed_check(output_bytes: dict[str, float], input_bytes: float) -> dict:
    """The seed's modes and best placement through the cost model, and its own arithmetic."""
    costs, link = seed_costs(output_bytes, input_bytes)
    walls = {m: round(predict(p, costs, link).wall_s, 3) for m, p in MODES.items()}
    order = sorted(walls, key=walls.get)
    return {"title": TITLE, "wall_s": walls, "ordering": " < ".join(order),
            "hybrid_fastest": order[0] == "hybrid", "best_placement": rank(costs, link)[0].placement.label,
            "fitted_link_mbit": round(link.bytes_per_s * 8 / 1e6, 3), **seed_arithmetic()}

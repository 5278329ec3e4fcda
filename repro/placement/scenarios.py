"""Scenario 2: the seed's own per-module numbers, put through the validated cost model.

The seed gives mean seconds per module for each mode, and says network I/O is about 20% of Remote's time.
Its Local column is each module's local compute. Its Remote column is remote compute plus that module's
transfers, so the link is chosen to make Remote's transfers (the pairs up to Filter, the figure down from
Plot: the bytes measured here) exactly 20% of Remote's total, and those seconds are taken off Filter's and
Plot's Remote numbers to leave their remote compute. Collect and Patch move nothing in Remote mode. With no
latency and no Dask overhead, every placement then follows from the cost model.
"""

from __future__ import annotations

from repro.placement.costmodel import LinkModel, StageCosts
from repro.placement.placement import STAGES
from repro.placement.verdict import SEED_NETWORK_SHARE, SEED_SECONDS, seed_totals


def seed_costs(output_bytes: dict[str, float], input_bytes: float) -> tuple[StageCosts, LinkModel]:
    """Stage costs and link for the seed's table, with the bytes this run measured."""
    network_s = SEED_NETWORK_SHARE * seed_totals()["remote"]
    moved = input_bytes + output_bytes[STAGES[-1]]  # Remote mode: pairs up, figure down
    link = LinkModel(bytes_per_s=moved / network_s)
    compute = {s: {"local": SEED_SECONDS[s]["local"], "remote": SEED_SECONDS[s]["remote"]} for s in STAGES}
    compute[STAGES[0]]["remote"] -= link.transfer_s(input_bytes)
    compute[STAGES[-1]]["remote"] -= link.transfer_s(output_bytes[STAGES[-1]])
    return StageCosts(compute, dict(output_bytes), input_bytes), link

"""The rule for claim 6 and the seed's numbers.

Statistic: per round, ``ln(W_X / W_Hybrid)`` for each other mode X (Remote, Local), the two runs of a round
back to back on the scheduler's clock; unit of independence: the round; interval: 95% t over rounds
(``repro.intervals.t_estimate``). Smallest effect of interest: 5% (``ln 1.05``).

Headline at a rate ("Hybrid is the fastest"): REPRODUCED when the lower bound exceeds ln 1.05 for every X;
NOT_REPRODUCED when the upper bound is below -ln 1.05 for some X (that mode is >= 5% faster); INCONCLUSIVE
otherwise (a tie within 5% included: it neither shows Hybrid fastest nor another mode faster). Each "Hybrid
vs X" part's own verdict is its interval against ``ln W_X/W_H > ln 1.05`` (NOT_REPRODUCED there means Hybrid's
margin over X is below 5%, which alone does not decide the headline).

The record's verdict is the headline at the seed's link (the first rate), after the gates. The side claims,
each a part with its own interval and region at every measured rate, are reported beside it and do not
change it: Hybrid's saving over Local (~40%: REPRODUCED inside 30-50%), and the network's share of Remote's
wall (~20%: REPRODUCED inside 10-30%; per Remote run, t over rounds). Gates: the link carries the traffic
(a shaped veth: measured throughput 0.5-1.1x tbf's rate and the veth counted at least Dask's bytes; a user's
cluster: a measured link; loopback: fails), the sites differ by the stated factor (within +-1/3 of it; with
no quota, at least 2x as the seed's did), every run did the same science, no run lost a worker.
"""

from __future__ import annotations

import math

from repro.intervals import t_estimate
from repro.placement.placement import MODES, STAGES
from repro.verdicts import Estimate, Gate, Interval, Part, Region, Verdict, judge

SUBJECT = "hybrid"
OTHERS = ("remote", "local")
SMALLEST_EFFECT = math.log(1.05)
FASTER = Region(low=SMALLEST_EFFECT)  # ln(W_X / W_Hybrid): Hybrid >= 5% faster than X
SAVING = Region(0.30, 0.50)  # "~40% less total time than Local"
NETWORK_SHARE = Region(0.10, 0.30)  # "~20% of its time"
SAME_SCIENCE = 1e-3  # max |effect difference| between any two runs: placement must not change the science
LINK_EFFICIENCY = (0.5, 1.1)  # measured throughput / tbf rate that counts as "the stated link"

# Seed 000's table: mean seconds per module, Local / Remote / Hybrid.
SEED_SECONDS = {
    "filter": {"local": 0.8, "remote": 0.9, "hybrid": 0.8},
    "collect": {"local": 2.1, "remote": 0.7, "hybrid": 0.7},
    "patch": {"local": 3.2, "remote": 1.1, "hybrid": 1.1},
    "plot": {"local": 0.6, "remote": 0.8, "hybrid": 0.6},
}
SEED_NETWORK_SHARE = 0.20  # "network I/O is Remote mode's main bottleneck (~20% of its time)"
SEED_CLAIMED_SAVING = 0.40  # "Hybrid ... ~40% less total time than Local"

PUBLISHED = {
    "seconds per module (local / remote / hybrid)": {s: list(v.values()) for s, v in SEED_SECONDS.items()},
    "network share of Remote's time": SEED_NETWORK_SHARE,
    "Hybrid's saving over Local (as stated)": SEED_CLAIMED_SAVING,
    "sites": "Local: i7 CPU, 16 GB, no GPU; Remote: cloud RTX 3080 Ti",
    "anchor": "Neurosurgeon (Kang et al., ASPLOS 2017): 3.1x lower latency on average (up to 40.7x)",
}


def seed_totals() -> dict[str, float]:
    return {mode: round(sum(SEED_SECONDS[s][mode] for s in STAGES), 6) for mode in MODES}


def seed_arithmetic() -> dict:
    """The seed's own totals and the saving they imply, next to the saving it states."""
    totals = seed_totals()
    saving = 1 - totals["hybrid"] / totals["local"]
    return {"totals_s": totals, "hybrid_saving_vs_local": round(saving, 4), "stated_saving": SEED_CLAIMED_SAVING,
            "consistent": abs(saving - SEED_CLAIMED_SAVING) < 0.05}


def log_ratios(block, mode: str) -> list[float]:
    """Per round that ran both: ln(W_mode / W_Hybrid)."""
    return [math.log(x.wall_s / h.wall_s) for x, h in block.paired(mode)]


def saving_of(ratio: Estimate) -> Estimate:
    """Hybrid's saving over Local, 1 - W_H/W_L = 1 - exp(-ln ratio), from the interval of the log ratio."""
    i = ratio.interval
    return Estimate(1 - math.exp(-ratio.value), Interval(1 - math.exp(-i.low), 1 - math.exp(-i.high), i.n, i.units,
                                                          f"{i.method}, as 1 - exp(-ln W_L/W_H)", i.level))


def rate_parts(block) -> dict[str, Part]:
    """The parts measured at one rate: Hybrid vs each other mode, the saving, the network share."""
    at = f"@ {block.rate_mbit:g} Mbit/s"
    ratios = {x: t_estimate(log_ratios(block, x), units="rounds") for x in OTHERS}
    shares = [r.network_s / r.wall_s for r in block.runs("remote")]
    return {
        "remote": Part(f"Hybrid vs Remote {at}: ln(W_R/W_H)", ratios["remote"], FASTER),
        "local": Part(f"Hybrid vs Local {at}: ln(W_L/W_H)", ratios["local"], FASTER),
        "saving": Part(f"Hybrid's saving over Local {at}", saving_of(ratios["local"]), SAVING),
        "share": Part(f"network share of Remote's wall {at}", t_estimate(shares, units="rounds"), NETWORK_SHARE),
    }


def headline(parts: dict[str, Part]) -> Verdict:
    """The rule of the module docstring on the Hybrid-vs-X parts of one rate."""
    versus = [parts[x].estimate.interval for x in OTHERS]
    if all(i.low > SMALLEST_EFFECT for i in versus):
        return Verdict.REPRODUCED
    if any(i.high < -SMALLEST_EFFECT for i in versus):
        return Verdict.NOT_REPRODUCED
    return Verdict.INCONCLUSIVE


def gates(blocks, *, link_mode: str, link_kind: str, stated_slowdown: float | None, slowdown: float,
          max_effect_diff: float, retried: int) -> list[Gate]:
    """The controls that make a run count (see the module docstring). ``link_mode``: "shaped" (a veth the run
    made and shaped), "external" (a user's cluster: the link as found and measured) or "loopback"."""
    runs = [r for b in blocks for r in b.all_runs()]
    short = [f"{d} {r.veth_bytes[d]} < {r.dask_bytes()[d]}" for r in runs if r.veth_bytes
             for d in ("upload", "download") if r.veth_bytes[d] < r.dask_bytes()[d]]
    efficiency = {b.rate_mbit: round(b.efficiency, 3) for b in blocks}
    off_rate = {r: e for r, e in efficiency.items() if not LINK_EFFICIENCY[0] <= e <= LINK_EFFICIENCY[1]}
    if link_mode == "shaped":
        carries = not short and not off_rate
        link_detail = (f"{link_kind}; measured/tbf rate {efficiency} (needed {LINK_EFFICIENCY[0]}-"
                       f"{LINK_EFFICIENCY[1]}); veth bytes >= Dask's estimate in every run"
                       f"{'' if not short else ': not in ' + ', '.join(short[:3])}")
    elif link_mode == "external":
        carries = all(b.link.bytes_per_s > 0 for b in blocks)
        link_detail = f"{link_kind}; measured {[round(b.rate_mbit, 3) for b in blocks]} Mbit/s between the workers"
    else:
        carries, link_detail = False, f"{link_kind}: no link between the sites, only the analytic model"
    if stated_slowdown is None:  # no quota: the hardware (or threads) must make a difference like the seed's
        differ, needed = slowdown >= 2.0, ">= 2 (no stated factor: the seed's sites differed ~3x)"
    else:
        differ = 2 / 3 * stated_slowdown <= slowdown <= 4 / 3 * stated_slowdown
        needed = f"{2 / 3 * stated_slowdown:.2g}-{4 / 3 * stated_slowdown:.2g} (stated {stated_slowdown:g}x, +-1/3)"
    return [
        Gate("the link carries the traffic", carries, link_detail),
        Gate("the sites differ by the stated factor", differ,
             f"workstation / remote compute on the throttled stages: {slowdown:.2f}x, needed {needed}"),
        Gate("same science in every run", max_effect_diff < SAME_SCIENCE,
             f"max |effect difference| {max_effect_diff:.1e} (needed < {SAME_SCIENCE:g})"),
        Gate("no run lost a worker", retried == 0, f"{retried} run(s) re-ran lost work"),
    ]


def rule(blocks, gate_list: list[Gate], units_by_profile: dict[str, int]):
    """The ruling: every rate's parts, the gates, and the headline at the seed's link as the verdict."""
    by_rate = [rate_parts(b) for b in blocks]
    seed = by_rate[0]

    def combine(verdicts: dict[str, Verdict]) -> Verdict:  # the headline at the seed's link, nothing else
        return headline(seed)

    parts = [p for parts in by_rate for p in parts.values()]
    return judge(parts, gate_list, combine=combine, units_by_profile=units_by_profile), by_rate


def wall_estimates(block) -> dict[str, Estimate]:
    """Each mode's mean wall time with a t interval over its recorded runs (for the report)."""
    return {m: t_estimate([r.wall_s for r in block.runs(m)], units="runs") for m in MODES}

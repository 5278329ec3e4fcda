"""The rule for claim 6 and the seed's numbers.

Per scenario: REPRODUCED when Hybrid has the lowest wall time beyond noise, i.e. at least ``MARGIN`` (5%)
below the best other mode and outside the min-max of that mode's repeated runs; NOT_REPRODUCED when another
mode is lower than Hybrid by the same standard; PARTIAL when Hybrid ties with the best within noise.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from repro.placement.placement import MODES, STAGES

MARGIN = 0.05
SUBJECT = "hybrid"

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


@dataclass
class ModeVerdict:
    verdict: str
    ordering: str  # fastest first, "<" beyond noise, "~" within it, e.g. "remote < hybrid < local"
    best_other: str
    margin: float  # (best other - hybrid) / best other, on medians: > 0 when Hybrid is faster
    medians: dict[str, float]
    ranges: dict[str, tuple[float, float]]

    def criteria(self) -> dict:
        return {"verdict": self.verdict, "ordering": self.ordering, "best other mode": self.best_other,
                "hybrid's margin over it": round(self.margin, 4), "margin needed": MARGIN}


def beyond_noise(faster: list[float], slower: list[float]) -> bool:
    """``faster`` beats ``slower`` by >= MARGIN on medians, and the two min-max ranges do not overlap."""
    a, b = statistics.median(faster), statistics.median(slower)
    return (b - a) / b >= MARGIN and max(faster) < min(slower)


def ordering(walls: dict[str, list[float]]) -> str:
    names = sorted(walls, key=lambda m: statistics.median(walls[m]))
    text = names[0]
    for previous, name in zip(names, names[1:]):
        text += f" {'<' if beyond_noise(walls[previous], walls[name]) else '~'} {name}"
    return text


def mode_verdict(walls: dict[str, list[float]]) -> ModeVerdict:
    """The rule, on wall times per mode (repeated runs; one value each for a modelled scenario)."""
    others = [m for m in walls if m != SUBJECT]
    medians = {m: statistics.median(v) for m, v in walls.items()}
    best = min(others, key=medians.get)
    if beyond_noise(walls[SUBJECT], walls[best]):
        verdict = "REPRODUCED"
    elif beyond_noise(walls[best], walls[SUBJECT]):
        verdict = "NOT_REPRODUCED"
    else:
        verdict = "PARTIAL"
    margin = (medians[best] - medians[SUBJECT]) / medians[best]
    return ModeVerdict(verdict, ordering(walls), best, margin, medians,
                       {m: (min(v), max(v)) for m, v in walls.items()})

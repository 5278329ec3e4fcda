"""Claim 3's rule, and seed 002's numbers it is compared with.

REPRODUCED iff the median Top/Bottom time ratio at the seed's shape is at least ``RATIO_THRESHOLD`` and
the LM head is the largest component of Top's time; NOT_REPRODUCED otherwise (also when the ratio is NaN).
"""

from __future__ import annotations

from collections.abc import Mapping

from repro.split.parts import LM_HEAD
from repro.verdicts import Verdict

RATIO_THRESHOLD = 2.0  # Top at least twice as slow as Bottom at the seed's shape

# Seed 002's numbers, GPT-2 small cut at 2 blocks, input [1, 6, 768] (what each is, in the comments).
PUBLISHED = {
    "shape": [1, 6, 768],
    "params_millions": {
        "bottom": {"token embedding": 38.60, "position embedding": 0.79, "blocks": 14.18, "total": 53.56},
        "top": {"blocks": 14.18, "final norm": 0.00, "lm head": 38.60, "total": 52.77},
    },
    # Published as "GFLOPS"; they are G multiply-accumulates.
    "gmacs": {"bottom": 0.08, "top": 0.32, "lm head": 0.23},
    "ms": {"bottom": 3.62, "top": 11.38},
    "ratio": 3.14,
    "lm_head_share_of_top": 0.72,
    # Sums to 35.11 ms, ~10x the 3.62 ms total it claims to break down: first-call effects.
    "bottom_breakdown_ms": [9.01, 23.32, 2.78],
}


def split_verdict(ratio: float, top_shares: Mapping[str, float]) -> Verdict:
    """The rule above, from the median ratio and each Top component's mean share of Top's time."""
    largest = max(top_shares, key=top_shares.get) if top_shares else None
    reproduced = bool(ratio >= RATIO_THRESHOLD) and largest == LM_HEAD
    return Verdict.REPRODUCED if reproduced else Verdict.NOT_REPRODUCED

"""Claim 3's rule, and seed 002's numbers it is compared with.

Two parts, each a statistic of the interleaved Bottom/Top timing pairs with a 95% bootstrap interval over
them (the pairs are the units: each pair's two calls ran back to back, so machine drifts cancel in its ratio):

- (a) the median Top/Bottom time ratio at the seed's shape (percentile interval) lies above
  ``RATIO_THRESHOLD``: Top at least twice as slow (the smallest effect of interest; the seed says 3.14);
- (b) the LM head is Top's largest component: the mean over calls of its share of the call minus the
  largest other component's share is > 0 (BCa).

Gate: at least ``MIN_PAIRS`` timing pairs. Parts combine by ``repro.verdicts.combine_parts``: both
reproduced -> REPRODUCED, both decided not -> NOT_REPRODUCED, one of each -> PARTIAL, any undecided ->
INCONCLUSIVE.
"""

from __future__ import annotations

import numpy as np

from repro.intervals import bootstrap_estimate, mean_of
from repro.split.parts import LM_HEAD
from repro.split.timing import PairedTiming
from repro.verdicts import Estimate, Gate, Interval, Part, Region, Ruling, judge

RATIO_THRESHOLD = 2.0  # Top at least twice as slow as Bottom at the seed's shape
MIN_PAIRS = 20  # fewer pairs give an interval too wide to decide at any ratio worth timing
RATIO = "(a) Top/Bottom time ratio (median of pairs)"
LM_HEAD_LEAD = "(b) LM head's share of Top minus the largest other component's"
LM_HEAD_SHARE = "LM head's share of Top's time"
UNITS = "interleaved pairs"

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


def split_ruling(timing: PairedTiming, units_by_profile: dict[str, int] | None = None) -> tuple[Ruling, dict[str, Estimate]]:
    """The rule above on the headline timing: the ruling, and the estimates it used (plus the LM head's share)."""
    ratios, shares = timing.ratios, timing.top.shares  # [pair], [pair, component]
    n = len(ratios)
    head = timing.top.names.index(LM_HEAD)
    others = np.delete(shares, head, axis=1)
    lead = shares[:, head] - (others.max(axis=1) if others.shape[1] else 0.0)
    if n < 2:  # one pair has no spread to resample: the gate below fails, and says so
        point = Estimate(float(np.median(ratios)), Interval(float("nan"), float("nan"), n, UNITS, "none (one pair)"))
        estimates = {RATIO: point, LM_HEAD_LEAD: point, LM_HEAD_SHARE: point}
    else:
        estimates = {
            RATIO: bootstrap_estimate(n, lambda idx: np.median(ratios[idx], axis=1), units=UNITS, method="percentile"),
            LM_HEAD_LEAD: bootstrap_estimate(n, mean_of(lead), units=UNITS),
            LM_HEAD_SHARE: bootstrap_estimate(n, mean_of(shares[:, head]), units=UNITS),
        }
    parts = [Part(RATIO, estimates[RATIO], Region(low=RATIO_THRESHOLD)),
             Part(LM_HEAD_LEAD, estimates[LM_HEAD_LEAD], Region(low=0.0))]
    gates = [Gate("enough timing pairs", n >= MIN_PAIRS, f"{n} interleaved pairs (need >= {MIN_PAIRS})")]
    return judge(parts, gates, units_by_profile=units_by_profile), estimates

"""Verdict for claim 4: do violations of attention's bounds catch the faults that matter, without false
alarms on clean runs? Fixed before measuring (the claim module's "Reproduced when", from the issue):

- part ``recall >= 0.95``: the bounds detector's recall on non-trivial harmful faults (exact binomial 95%
  interval over faults) against the region (0.95, 1];
- part ``recall > 0.90``: the same interval against (0.90, 1] (decided not reproduced when its upper end is
  at most 0.90);
- part ``false alarms < 1%``: the share of clean attention calls flagged (exact binomial over calls) against
  [0, 0.01).
Combination: REPRODUCED when the first and the third parts are reproduced; NOT_REPRODUCED when the second
is decided not reproduced; INCONCLUSIVE otherwise. Gates: >= 100 non-trivial harmful faults and >= 1,000
clean attention calls.
"""

from __future__ import annotations

from repro.verdicts import Estimate, Gate, Part, Region, Ruling, Verdict, judge

RECALL = "recall >= 0.95"
RECALL_FLOOR = "recall > 0.90"
FALSE_ALARMS = "false alarms < 1%"
REGIONS = {RECALL: Region(low=0.95), RECALL_FLOOR: Region(low=0.90), FALSE_ALARMS: Region(high=0.01)}
MIN_NONTRIVIAL = 100
MIN_CLEAN_CALLS = 1000

PUBLISHED = {
    "seed": "gpt2-sdc-simulator (seed 003): SDC in LLM attention detected from theoretical bounds "
    "(Lambert-W tight bounds, NaN/Inf handling); 768-configuration bit x location x seed sweep on GPT-2 + WikiText",
    "ATTNChecker": "Liang et al. 2024: detects and corrects all INF/NaN/near-INF errors it targets; ~7% average "
    "training overhead on 4 LLMs",
    "Kim et al. 2021": "L2 self-attention's Lipschitz bound carries the factor 4 W0((N-1)/e) + 1; dot-product "
    "attention is not globally Lipschitz",
}


def combine(verdicts: dict[str, Verdict]) -> Verdict:
    R, N = Verdict.REPRODUCED, Verdict.NOT_REPRODUCED
    if verdicts[RECALL] == R and verdicts[FALSE_ALARMS] == R:
        return R
    if verdicts[RECALL_FLOOR] == N:
        return N
    return Verdict.INCONCLUSIVE


def sdc_ruling(recall_nontrivial: Estimate | None, false_alarms: Estimate, *,
               units_by_profile: dict[str, int] | None = None) -> Ruling:
    n = recall_nontrivial.interval.n if recall_nontrivial else 0
    gates = [
        Gate("non-trivial harmful faults", n >= MIN_NONTRIVIAL, f"{n} (need >= {MIN_NONTRIVIAL})"),
        Gate("clean attention calls", false_alarms.interval.n >= MIN_CLEAN_CALLS,
             f"{false_alarms.interval.n} (need >= {MIN_CLEAN_CALLS})"),
    ]
    parts = []
    if recall_nontrivial is not None:
        parts = [Part(RECALL, recall_nontrivial, REGIONS[RECALL]),
                 Part(RECALL_FLOOR, recall_nontrivial, REGIONS[RECALL_FLOOR])]
    parts.append(Part(FALSE_ALARMS, false_alarms, REGIONS[FALSE_ALARMS]))
    return judge(parts, gates, combine=combine, units_by_profile=units_by_profile)

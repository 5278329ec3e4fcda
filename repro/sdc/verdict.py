"""Verdict for claim 4: do violations of attention's bounds catch the faults that matter, without false
alarms on clean runs?

REPRODUCED when recall on harmful faults >= 99% and no clean attention call is flagged; PARTIAL when
recall >= 90% with no clean false positive; NOT_REPRODUCED otherwise (including any clean false positive,
and a sweep without harmful faults, where recall is undefined). Fixed before any run, from the issue.
"""

from __future__ import annotations

from repro.verdicts import Verdict

RECALL_REPRODUCED = 0.99
RECALL_PARTIAL = 0.90

PUBLISHED = {
    "seed": "gpt2-sdc-simulator (seed 003): SDC in LLM attention detected from theoretical bounds "
    "(Lambert-W tight bounds, NaN/Inf handling); 768-configuration bit x location x seed sweep on GPT-2 + WikiText",
    "ATTNChecker": "Liang et al. 2024: detects and corrects all INF/NaN/near-INF errors it targets; ~7% average "
    "training overhead on 4 LLMs",
    "Kim et al. 2021": "L2 self-attention's Lipschitz bound carries the factor 4 W0((N-1)/e) + 1; dot-product "
    "attention is not globally Lipschitz",
}


def sdc_verdict(recall: float | None, clean_false_positives: int) -> Verdict:
    if recall is None or clean_false_positives > 0:
        return Verdict.NOT_REPRODUCED
    if recall >= RECALL_REPRODUCED:
        return Verdict.REPRODUCED
    if recall >= RECALL_PARTIAL:
        return Verdict.PARTIAL
    return Verdict.NOT_REPRODUCED

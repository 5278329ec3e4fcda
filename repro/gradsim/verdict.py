"""Verdict for claim 2: does GradSim predict ripple over the valid MEMIT edits?

The rule (fixed in the claim-2 issue before any result was seen), on the pooled valid edits of both
sources:

- REPRODUCED: Spearman rho(GradSim(i, j), |Delta log P(j | edit i)|) > 0 with within-edit permutation
  p < 0.05, and at least half of the attempted edits valid;
- PARTIAL: rho > 0 but p >= 0.05, or rho > 0 and significant but fewer than half of the attempted edits
  valid (the evidence rests on too few edits that took);
- NOT_REPRODUCED: rho <= 0, or no valid edit at all (nothing to correlate).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from repro.verdicts import Verdict

ALPHA = 0.05
MIN_VALID_SHARE = 0.5

PUBLISHED = {
    "source": "Qin et al., EMNLP 2024, 'Why Does New Knowledge Create Messy Ripple Effects in LLMs?'",
    "finding": "GradSim correlates strongly and positively with ripple effects; failure cases at low GradSim",
    "seed 001": "GradSim on the MLP down-projection of a target layer, HotpotQA 2-hop pieces, MEMIT edits",
    "MEMIT (GPT-2 XL)": "layers 13-17 of 48, v_lr 0.5, 20 steps, clamp_norm_factor 0.75, kl_factor 0.0625, "
                        "mom2_update_weight 20000",
}


@dataclass(frozen=True)
class GradSimVerdict:
    verdict: str
    spearman: float
    permutation_p: float
    edits_attempted: int
    edits_valid: int
    valid_share: float
    rho_positive: bool
    significant: bool
    enough_valid: bool

    def criteria(self) -> dict:
        return asdict(self)


def gradsim_verdict(spearman: float, permutation_p: float, attempted: int, valid: int) -> GradSimVerdict:
    share = valid / attempted if attempted else 0.0
    positive = valid > 0 and math.isfinite(spearman) and spearman > 0
    significant = positive and math.isfinite(permutation_p) and permutation_p < ALPHA
    enough = share >= MIN_VALID_SHARE
    if positive and significant and enough:
        verdict = Verdict.REPRODUCED
    elif positive:
        verdict = Verdict.PARTIAL
    else:
        verdict = Verdict.NOT_REPRODUCED
    return GradSimVerdict(verdict.value, spearman, permutation_p, attempted, valid, share, positive, significant, enough)

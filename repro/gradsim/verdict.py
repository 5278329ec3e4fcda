"""Verdict for claim 2: does GradSim predict ripple over the valid MEMIT edits?

The rule (claim 2's docstring, fixed in issue 15 before the run it decides), on the mean over valid
edits of the per-edit Spearman rho between GradSim(i, j) and |Delta log P(a_j|q_j)| over the pieces j,
with its 95% two-way (edits x pieces) bootstrap interval:

- REPRODUCED when the interval's lower bound is above 0 *and* rho >= 0.3 (a moderate correlation; Qin et
  al. report r > 0.82 for their own ripple measure);
- NOT_REPRODUCED when the upper bound is at or below 0.3 (every correlation worth the name excluded);
- INCONCLUSIVE otherwise, or when a gate fails.

"Lower bound > 0 and rho >= 0.3" is not one region test, so it is two parts over the same estimate,
combined by ``combine`` below: part "rho > 0" (Region(low=0): REPRODUCED when the whole interval is above
0) and part "rho > 0.3" (Region(low=0.3): NOT_REPRODUCED when the whole interval is at or below 0.3).
NOT_REPRODUCED when the second part says so; else REPRODUCED when the first part is REPRODUCED and the
point estimate is >= 0.3; else INCONCLUSIVE.

Gates (a failed gate makes the run INCONCLUSIVE, never NOT_REPRODUCED):

- positive control: the first-order prediction sum_layers <grad_W log P(a_j|q_j), Delta W_i> predicts the
  measured |Delta log P_j| with mean per-edit Spearman >= 0.5 (otherwise the ripple is not being measured
  and no correlation with GradSim would mean anything);
- edits take: at least 80% of the attempted edits are valid (P(new) > P(old) after the edit).
"""

from __future__ import annotations

from repro.verdicts import Estimate, Gate, Part, Region, Ruling, Verdict, judge

MIN_RHO = 0.3  # smallest correlation of interest
CONTROL_MIN_RHO = 0.5  # the positive control's gate
MIN_VALID_SHARE = 0.8  # the edits-take gate
ABOVE_ZERO, MODERATE = "rho > 0", "rho > 0.3"

PUBLISHED = {
    "source": "Qin et al., EMNLP 2024, 'Why Does New Knowledge Create Messy Ripple Effects in LLMs?'",
    "finding": "GradSim correlates strongly and positively with ripple effects (r > 0.82 for their measure); "
               "failure cases at low GradSim",
    "their ripple": "accuracy on questions logically implied by the edited fact (RippleEdits-style)",
    "seed 001": "GradSim on the MLP down-projection of a target layer, HotpotQA 2-hop pieces, MEMIT edits",
    "MEMIT (GPT-2 XL)": "layers 13-17 of 48, v_lr 0.5, 20 steps, clamp_norm_factor 0.75, kl_factor 0.0625, "
                        "mom2_update_weight 20000",
}


def rule(rho: float):
    """The combination rule above, for a measured point estimate ``rho``."""

    def combine(verdicts: dict[str, Verdict]) -> Verdict:
        if verdicts[MODERATE] == Verdict.NOT_REPRODUCED:
            return Verdict.NOT_REPRODUCED
        if verdicts[ABOVE_ZERO] == Verdict.REPRODUCED and rho >= MIN_RHO:
            return Verdict.REPRODUCED
        return Verdict.INCONCLUSIVE

    return combine


def gradsim_ruling(gradsim: Estimate, first_order: Estimate, attempted: int, valid: int,
                   units_by_profile: dict[str, int] | None = None) -> Ruling:
    parts = [Part(ABOVE_ZERO, gradsim, Region(low=0.0)), Part(MODERATE, gradsim, Region(low=MIN_RHO))]
    share = valid / attempted if attempted else 0.0
    gates = [
        Gate("positive control (first-order prediction tracks the ripple)", first_order.value >= CONTROL_MIN_RHO,
             f"mean per-edit Spearman {first_order.value:.3f}, needs >= {CONTROL_MIN_RHO}"),
        Gate("edits take (P(new) > P(old) after the edit)", share >= MIN_VALID_SHARE,
             f"{valid} of {attempted} valid ({share:.0%}), needs >= {MIN_VALID_SHARE:.0%}"),
    ]
    return judge(parts, gates, combine=rule(gradsim.value), units_by_profile=units_by_profile)

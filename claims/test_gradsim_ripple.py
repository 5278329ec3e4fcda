"""Knowledge coupling: pieces with high gradient similarity ripple more when one of them is edited.

Claim as published:
    Seed 001 ("Multi-Model Knowledge Coupling MVP"): GradSim(i, j) = cos(grad_theta log P(a_i|q_i),
    grad_theta log P(a_j|q_j)), theta = the MLP output projection of a target layer (GPT-2
    transformer.h.{i}.mlp.c_proj, LLaMA model.layers.{i}.mlp.down_proj), over knowledge pieces made from
    HotpotQA 2-hop reasoning chains. Editing a piece with MEMIT ripples into the others, and the ripple
    (Delta log P, exact-match change) correlates with GradSim. Qin et al. (EMNLP 2024, "Why Does New
    Knowledge Create Messy Ripple Effects in LLMs?") report a strong positive correlation between GradSim
    and ripple effects.

In English:
    If two facts pull the same weights in similar directions (their gradients point the same way), then
    rewriting one of them with a targeted weight edit should disturb the other more than it disturbs facts
    whose gradients are unrelated.

Source:
    Seed report 001 as quoted in the claim-2 issue; Qin et al., EMNLP 2024; MEMIT: Meng et al., ICLR 2023
    (kmeng01/memit: compute_z.py, compute_ks.py, memit_main.py, rome/layer_stats.py).

Method:
    Pieces: cloze facts of a fixture, typed by answer kind, with subjects under several relations and
    relations over many subjects (France: capital, language, continent, currency); each must pass a
    knowledge check (greedy answer or P >= 5%), as must the HotpotQA bridge pieces, which stay descriptive
    (few pass for a small model and their answers have no type for a same-kind counterfactual). One
    batched pass gives the check, GradSim at the middle edited layer's down-projection and the gradient
    factors at every edited layer. MEMIT (layers at relative depth 0.2-0.37; z by Adam with KL and norm
    clamp, batched over edits, each as it would be alone; covariance of down-projection inputs from
    windows of many sampled WikiText-2 articles; lambda = MEMIT's GPT-J lambda / d_mlp times the model's
    d_mlp, fixed before measuring) rewrites each edited fact to an answer of the same kind; weights are
    restored exactly after each edit. An edit is valid when P(new) > P(old) after it. Ripple: |Delta log
    P(a_j|q_j)| of every other known fact j; pairs whose j answers with the edit's new target are left
    out and counted. Ripple here is a change of belief on every fact, not Qin et al.'s accuracy on
    questions logically entailed by the edit.

Reproduced when:
    Statistic: the mean over valid edits of the per-edit Spearman rho between GradSim(i, j) and |Delta log
    P(a_j|q_j)| over the known facts j. Units: edits (n) crossed with pieces; 95% interval from a two-way
    (edits x pieces) percentile bootstrap; p from permuting piece labels jointly across edits (reported).
    REPRODUCED when the interval's lower bound is above 0 and rho >= 0.3; NOT_REPRODUCED when the upper
    bound is at or below 0.3; INCONCLUSIVE otherwise. With repro.verdicts: two parts on the same estimate,
    "rho > 0" (Region(low=0)) and "rho > 0.3" (Region(low=0.3)), combined as: NOT_REPRODUCED when "rho >
    0.3" is NOT_REPRODUCED (upper bound <= 0.3); else REPRODUCED when "rho > 0" is REPRODUCED and the point
    estimate is >= 0.3; else INCONCLUSIVE. Gates (a failed gate makes it INCONCLUSIVE): the positive
    control, the first-order prediction sum_layers <grad_W log P(a_j|q_j), Delta W_i>, predicts |Delta log
    P_j| with mean per-edit Spearman >= 0.5; at least 80% of the attempted edits are valid.
"""

import numpy as np
import pytest

from repro.gradsim import run_gradsim
from repro.verdicts import Claim, Verdict

CLAIM = Claim.parse(__doc__, key="gradsim_ripple", number=2)

N, INC = Verdict.NOT_REPRODUCED, Verdict.INCONCLUSIVE
EXPECTED = {  # model: {profile: declared verdict}
    # Measured (cpu, 36 edits, 34 valid, all 34 with the new target top-1; 115 known facts): rho 0.216, 95%
    # two-way CI [0.120, 0.305] (n = 34 edits x 115 pieces), joint permutation p 0.0005; positive control
    # rho 0.930. GradSim predicts ripple, but weakly; the interval straddles 0.3, so the cpu run cannot
    # decide (~42 valid edits would, at this half-width). Same-template pairs have high GradSim (0.44) and
    # little ripple (0.21); same-subject pairs the reverse (0.15, 3.3); rho within a template ~0.
    # gpu (100 edits, not measured yet): declared as the projection of the cpu estimate, NOT_REPRODUCED.
    "smollm2-135m": {"cpu": INC, "gpu": N},
    "gpt2": {"cpu": INC, "gpu": INC},  # the seed's model family, when its weights are present (NOT_RUN here); not measured
}


@pytest.fixture(scope="module", params=list(EXPECTED))
def outcome(request, run_claim):
    return run_claim(CLAIM, request.param, EXPECTED, lambda lm, profile, out: run_gradsim(lm, profile.gradsim, out),
                     data=("hotpotqa", "wikitext-2"))


def test_numbers_match_snapshot(outcome, check_snapshot):
    check_snapshot(outcome, outcome.result.snapshot(), abs=0.02)


def test_verdict_is_the_declared_one(outcome):
    assert outcome.record.verdict == outcome.record.expected, outcome.record.summary()


def test_edits_take(outcome, profile):
    # Efficacy is measured, not assumed: the new target must beat the old answer, for at least 30 edits.
    eff = outcome.result.efficacy()
    assert eff["valid"] >= 30 or profile.gradsim.max_experiments < 30, eff
    assert eff["new_target_top1"] >= 0.8 * eff["attempted"], eff
    assert eff["mean_logp_new_after"] > eff["mean_logp_old_after"], eff


def test_the_positive_control_measures_the_ripple(outcome):
    # If the first-order prediction did not track the measured ripple, the ripple would not be measured.
    control = [g for g in outcome.result.ruling.gates if g.name.startswith("positive control")]
    assert len(control) == 1 and control[0].passed, control


def test_pieces_are_known_and_nothing_is_dropped_silently(outcome):
    result = outcome.result
    assert result.sources["facts"]["pieces"] >= 60, result.sources
    read = result.sources["facts"]["read"]
    assert read == result.sources["facts"]["pieces"] + sum(result.sources["facts"]["dropped"].values())
    exclusions = result.stats["exclusions"]
    assert exclusions["the edited piece itself"] == result.efficacy()["valid"], exclusions
    n_valid = result.efficacy()["valid"]
    assert result.stats["pairs"] + sum(exclusions.values()) == n_valid * len(result.pieces), exclusions


def test_gradsim_is_a_cosine_matrix_that_varies_apart_from_the_template(outcome):
    g, rel = outcome.result.gradsim, outcome.result.relations
    assert np.allclose(g, g.T, atol=1e-6) and np.allclose(np.diag(g), 1.0, atol=1e-6)
    assert np.all(np.abs(g) <= 1 + 1e-6)
    classes = {c["pairs"]: c["n"] for c in outcome.result.stats["pair_classes"]}
    assert classes["same subject, other template"] > 0 and classes["same template, other subject"] > 0, classes
    assert rel["same_subject"].sum() > len(g)  # subjects under several relations

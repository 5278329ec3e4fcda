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
    Cloze pieces from HotpotQA bridge questions (the supporting sentence cut before the answer; the other
    paragraph's sentence cut before the bridge entity) and from a fixture of 2-hop chains of common facts
    kept only where the model knows them (greedy answer, or P >= 5%). GradSim at the middle edited layer's
    down-projection, batched from layer inputs and output gradients. MEMIT edits (layers at relative depth
    0.2-0.37, z by Adam with KL and norm clamp, covariance of down-projection inputs over WikiText-2,
    closed-form float64 update layer by layer) to a counterfactual answer of the same kind, weights
    restored exactly after each; edits that do not take are flagged and excluded. Ripple = |Delta log
    P(a_j|q_j)| of every other piece. Spearman rho pooled over valid edits, p from permuting ripple within
    each edit, 95% CI by cluster bootstrap over edits, partial correlation controlling for shared subject
    and template.

Reproduced when:
    REPRODUCED when Spearman rho > 0 with within-edit permutation p < 0.05 over the pooled valid edits and
    at least half of the attempted edits are valid; PARTIAL when rho > 0 but not significant, or when fewer
    than half of the attempted edits are valid; NOT_REPRODUCED otherwise (rho <= 0 or no valid edit).
"""

import numpy as np
import pytest

from repro.gradsim import run_gradsim
from repro.verdicts import Claim, Verdict

CLAIM = Claim.parse(__doc__, key="gradsim_ripple", number=2)

R, P, N = Verdict.REPRODUCED, Verdict.PARTIAL, Verdict.NOT_REPRODUCED
EXPECTED = {  # model: {profile: declared verdict}
    # Measured (cpu): 6 of 8 edits valid; pooled Spearman 0.074, within-edit permutation p 0.17, cluster CI
    # [-0.002, 0.149]; the known facts alone give rho 0.12 (p 0.001), HotpotQA pieces none (2 valid edits).
    # Weakly positive but not significant at this scale; the gpu profile (100 edits) is not measured yet.
    "smollm2-135m": {"cpu": P, "gpu": P},
    "gpt2": {"cpu": R, "gpu": R},  # the seed's model family, when its weights are present (NOT_RUN here)
}


@pytest.fixture(scope="module", params=list(EXPECTED))
def outcome(request, run_claim):
    return run_claim(CLAIM, request.param, EXPECTED, lambda lm, profile, out: run_gradsim(lm, profile.gradsim, out),
                     data=("hotpotqa", "wikitext-2"))


def test_numbers_match_snapshot(outcome, check_snapshot):
    check_snapshot(outcome, outcome.result.snapshot(), abs=0.02)


def test_verdict_is_the_declared_one(outcome):
    assert outcome.record.verdict == outcome.record.expected, outcome.record.summary()


def test_both_sources_give_pieces(outcome):
    # The verdict pools HotpotQA pieces and facts the model knows; each source must contribute.
    sources = outcome.result.sources
    assert sources["hotpotqa"]["pieces"] >= 10, sources
    assert sources["facts"]["pieces"] >= 10, sources


def test_gradsim_is_a_cosine_matrix(outcome):
    g = outcome.result.gradsim
    assert np.allclose(g, g.T, atol=1e-6) and np.allclose(np.diag(g), 1.0, atol=1e-6)
    assert np.all(np.abs(g) <= 1 + 1e-6)


def test_edits_take_and_are_measured(outcome):
    # Efficacy is measured, not assumed: most edits must make the new target far more likely.
    result = outcome.result
    eff = result.efficacy()
    assert eff["attempted"] == len(result.outcomes) > 0
    assert eff["valid"] >= 1, [o.summary() for o in result.outcomes]
    assert eff["mean_logp_gain"] > 0
    assert result.correlations["pooled"]["pairs"] > 0

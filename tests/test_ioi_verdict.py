"""The claim-1 rule: its quantities on hand-made effect matrices, and its verdict from bootstrap intervals
over simulated pairs whose truth is known (the rule is fixed; these pin its reading)."""

import numpy as np
import pytest

from repro.ioi.verdict import (
    BAND,
    BAND_BEST,
    DEPTH,
    LOW,
    MID_BAND,
    PairEffects,
    handoff_layer,
    ioi_criteria,
    ioi_ruling,
    layers_in,
)
from repro.verdicts import Verdict


def test_bands_at_gpt2_and_smollm2_depth():
    assert layers_in(*BAND, 12) == [9, 10] and layers_in(*MID_BAND, 12) == [7, 8]
    assert layers_in(*BAND, 30) == [22, 23, 24, 25, 26, 27] and layers_in(*MID_BAND, 30) == [19, 20]


def effects(layer_mass: dict[int, float], n_layers=12, n_heads=12, top=None):
    m = np.full((n_layers, n_heads), 0.001)
    for layer, mass in layer_mass.items():
        m[layer, :3] = mass / 3
    if top:
        m[top] = 1.0
    return m


def test_criteria_on_all_pairs():
    good = ioi_criteria(effects({9: 2.0, 10: 1.5, 7: 0.5}, top=(9, 9)), clean_logit_diff=3.5)
    assert good.top_head == (9, 9) and good.top_head_in_band and good.band_is_best and good.low_is_small
    assert good.low_layers == [0, 1, 2] and good.clean_logit_diff_vs_reference == 1.0 and good.best_window == [9, 10]
    shifted = ioi_criteria(effects({7: 2.0, 8: 2.0, 10: 0.2}, top=(10, 5)))
    assert shifted.top_head_in_band and not shifted.band_is_best and shifted.best_window == [7, 8]
    low = ioi_criteria(effects({9: 2.0, 10: 1.0, 1: 0.5}, top=(9, 9)))
    assert low.low_share >= 0.10 and not low.low_is_small and low.band_is_best
    assert not ioi_criteria(effects({9: 2.0, 10: 1.0}, top=(4, 0))).top_head_in_band


def test_sign_does_not_matter_and_mid_band_role_is_reported():
    m = effects({9: 2.0, 10: 1.5}, top=(10, 1))
    assert ioi_criteria(-m) == ioi_criteria(m)
    final = np.zeros_like(m)
    final[7:9] = m[7:9]
    v = ioi_criteria(m, final_pos_effects=final)
    assert v.mid_layers == [7, 8] and v.mid_final_fraction == pytest.approx(1.0) and v.mid_share_final == pytest.approx(1.0)


def test_degenerate_inputs_are_rejected():
    with pytest.raises(ValueError, match="nonzero"):
        ioi_criteria(np.zeros((12, 12)))
    with pytest.raises(ValueError, match=r"\[layer, head\]"):
        ioi_criteria(np.ones(12))


def simulated_pairs(truth: np.ndarray, noise: float, n: int = 40, seed: int = 0) -> PairEffects:
    """Pairs whose normalised head effects are ``truth`` plus per-pair noise (clean 3, corrupted -3)."""
    rng = np.random.default_rng(seed)
    clean = 3 + rng.normal(0, 0.3, n)
    corrupted = -3 + rng.normal(0, 0.3, n)
    gap = (clean - corrupted)[:, None, None]
    heads = corrupted[:, None, None] + gap * (truth[None] + rng.normal(0, noise, (n, *truth.shape)))
    return PairEffects(clean, corrupted, heads)


def test_clear_pairs_reproduce_and_noisy_ones_cannot_decide():
    truth = effects({9: 2.0, 10: 1.5, 7: 0.3}, top=(9, 9))
    clear = ioi_ruling(simulated_pairs(truth, noise=0.05), n_pairs=40)
    assert clear.ruling.verdict == Verdict.REPRODUCED and clear.top_head_stability > 0.95
    noisy = ioi_ruling(simulated_pairs(truth, noise=3.0), n_pairs=40, units_by_profile={"cpu": 40, "gpu": 200})
    assert noisy.ruling.verdict == Verdict.INCONCLUSIVE and noisy.ruling.decided_by == "region"
    assert "pairs would decide" in noisy.ruling.to_decide


def test_a_clear_shift_is_partial_and_a_top_head_outside_the_band_is_not_reproduced():
    shifted = ioi_ruling(simulated_pairs(effects({7: 2.0, 8: 2.0, 10: 0.2}, top=(10, 5)), noise=0.05), n_pairs=40)
    parts = {p.name: p.verdict for p in shifted.ruling.parts}
    assert parts[DEPTH] == Verdict.REPRODUCED and parts[BAND_BEST] == Verdict.NOT_REPRODUCED
    assert shifted.ruling.verdict == Verdict.PARTIAL and parts[LOW] == Verdict.REPRODUCED
    outside = ioi_ruling(simulated_pairs(effects({9: 2.0, 10: 1.0}, top=(4, 0)), noise=0.05), n_pairs=40)
    assert outside.ruling.verdict == Verdict.NOT_REPRODUCED


def test_a_model_that_fails_the_task_is_inconclusive_naming_the_gate():
    pairs = simulated_pairs(effects({9: 2.0, 10: 1.5}, top=(9, 9)), noise=0.05)
    ruled = ioi_ruling(pairs, n_pairs=100)  # 40 of 100 pairs kept
    assert ruled.ruling.verdict == Verdict.INCONCLUSIVE and ruled.ruling.decided_by.startswith("gate: the model does the task")


def test_handoff_layer():
    resid = np.zeros((4, 5))
    resid[:2, 2] = 1.0  # the answer sits at S2 ...
    resid[2:, 4] = 1.0  # ... then at END
    assert handoff_layer(resid) == 2
    assert handoff_layer(np.zeros((3, 4))) is None

"""The claim-1 verdict rule on hand-made effect matrices (the rule is fixed; these pin its reading)."""

import numpy as np
import pytest

from repro.ioi.verdict import BAND, MID_BAND, handoff_layer, ioi_verdict, layers_in
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


def test_reproduced_partial_and_not_reproduced():
    good = ioi_verdict(effects({9: 2.0, 10: 1.5, 7: 0.5}, top=(9, 9)), clean_logit_diff=3.5)
    assert good.verdict is Verdict.REPRODUCED and good.top_head == (9, 9) and good.low_layers == [0, 1, 2]
    assert good.clean_logit_diff_vs_reference == 1.0 and good.best_window == [9, 10]
    # top head in the band but the heaviest window is 7-8: PARTIAL
    partial = ioi_verdict(effects({7: 2.0, 8: 2.0, 10: 0.2}, top=(10, 5)))
    assert partial.verdict is Verdict.PARTIAL and not partial.band_is_best and partial.best_window == [7, 8]
    # everything right but the low layers carry >= 10%: PARTIAL
    low = ioi_verdict(effects({9: 2.0, 10: 1.0, 1: 0.5}, top=(9, 9)))
    assert low.verdict is Verdict.PARTIAL and low.low_share >= 0.10 and low.band_is_best
    # the top head outside the band: NOT_REPRODUCED, however the rest looks
    assert ioi_verdict(effects({9: 2.0, 10: 1.0}, top=(4, 0))).verdict is Verdict.NOT_REPRODUCED


def test_sign_does_not_matter_and_mid_band_role_is_reported():
    m = effects({9: 2.0, 10: 1.5}, top=(10, 1))
    assert ioi_verdict(-m).verdict is ioi_verdict(m).verdict is Verdict.REPRODUCED
    final = np.zeros_like(m)
    final[7:9] = m[7:9]
    v = ioi_verdict(m, final_pos_effects=final)
    assert (
        v.mid_layers == [7, 8]
        and v.mid_final_fraction == pytest.approx(1.0)
        and v.mid_share_final == pytest.approx(1.0)
    )


def test_degenerate_inputs_are_rejected():
    with pytest.raises(ValueError, match="nonzero"):
        ioi_verdict(np.zeros((12, 12)))
    with pytest.raises(ValueError, match=r"\[layer, head\]"):
        ioi_verdict(np.ones(12))


def test_handoff_layer():
    resid = np.zeros((4, 5))
    resid[:2, 2] = 1.0  # the answer sits at S2 ...
    resid[2:, 4] = 1.0  # ... then at END
    assert handoff_layer(resid) == 2
    assert handoff_layer(np.zeros((3, 4))) is None

"""IOI activation patching: GPT-2's indirect-object circuit lives in its late-middle layers.

Claim as published:
    GPT-2 on indirect object identification, 100 normal/corrupted sentence pairs, activation patching of
    layers and attention heads, metric = logit difference. Layers 9-10 contribute most; mid layers 7-8
    pass on and integrate information; low layers 1-3 matter little. Pipeline: Filter (drop pairs the
    model gets wrong), Collect (extract and cache intermediate activations), Patch (replace activations,
    compute logit diff), Plot (layer x head heatmap). Example pair: "After John and Mary went to the store,
    John gave the bag to" / "After John and Mary went to the store, Mary gave the bag to". Reference for
    GPT-2 small: mean logit diff about 3.5; name movers 9.9, 9.6, 10.0; negative name movers 10.7, 11.10;
    S-inhibition heads 7.3, 7.9, 8.6, 8.10.

In English:
    When a sentence names two people and then repeats one of them ("John and Mary ... John gave the bag
    to"), GPT-2 completes it with the other one (" Mary"). Copying a single attention head's output from
    the normal sentence into a run on a sentence where the answer is the other name restores the normal
    answer mostly for heads in layers 9-10 (of 12); heads in layers 7-8 carry the information towards
    the last token; heads in the lowest layers barely matter.

Source:
    Seed report 000 (IOI activation patching on GPT-2 small), as quoted in the claim-1 issue; reference
    numbers from Wang et al. 2022, "Interpretability in the Wild" and the TransformerLens IOI notebook.

Method:
    Generate IOI pairs (16 templates in ABBA and BABA order, names/places/objects that are single tokens
    for the model's tokenizer; corruption: the seed's S2 swap), keep the pairs the model answers correctly
    (clean prefers IO, the swap flips it), cache every activation of the clean and corrupted runs, and
    patch clean activations into the corrupted run: each head over all positions and at the final position
    only, each attention and MLP output, the residual stream per layer and position. The effect is the
    recovered fraction of the logit diff IO - S, (patched - corrupted) / (clean - corrupted). Exact
    patching is cross-checked against attribution patching (one backward pass). Another model is compared
    at the same relative depth (layer + 1/2) / n_layers.

Reproduced when:
    Each part is a statistic of the kept pairs with a 95% bootstrap interval over them (the pairs are the
    independent units; each resample re-averages the clean, corrupted and patched logit diffs before
    normalising). (a) The relative depth of the head with the largest |effect| lies in the band of layers
    9-10 of 12 (percentile interval; the region is the depths the band's layers span). (b) The band holds
    more of the total |head effect| than any other window of as many consecutive layers: the margin band -
    best other window is > 0 (BCa). (c) The lowest quarter of layers holds < 10% of it (BCa). A part is
    reproduced when its interval lies inside its region, not reproduced when it lies entirely outside, and
    undecided otherwise. Gates: the model does the task (>= 80% of pairs kept, mean clean logit diff > 1,
    mean corrupted < -1) and >= 20 kept pairs; a failed gate makes the verdict INCONCLUSIVE. Combination:
    NOT_REPRODUCED when (a) is not reproduced; INCONCLUSIVE when (a) is undecided; REPRODUCED when (a), (b)
    and (c) are reproduced; PARTIAL when (a) is and (b) or (c) is decided not; INCONCLUSIVE otherwise. The
    mid band's role (layers 7-8 of 12), how often the top head is the same head across resamples, and the
    clean logit diff (vs 3.5) are reported, not judged.
"""

import numpy as np
import pytest

from repro.ioi import run_ioi
from repro.verdicts import Claim, Verdict

CLAIM = Claim.parse(__doc__, key="ioi", number=1)

R, P, INC = Verdict.REPRODUCED, Verdict.PARTIAL, Verdict.INCONCLUSIVE
EXPECTED = {  # model: {profile: declared verdict}
    "gpt2": {"cpu": R, "gpu": R},  # the published model, when its weights are present
    # Measured at cpu (38 kept pairs): (a) top head 23.3 (depth 0.783, in the band 22-27 of 30), but it is the
    # top head in only 75% of bootstrap resamples; in the others a layer-20 head leads, so the depth interval
    # is [0.683, 0.783] and straddles the band's edge: undecided (~150 pairs would decide; gpu runs 200).
    # (b) decided not: band minus the heaviest other window (19-24) = -0.21 [-0.23, -0.20]. (c) reproduced:
    # lowest quarter 0.009 [0.007, 0.010]. (a) undecided -> INCONCLUSIVE (was PARTIAL under the point rule).
    # gpu (200 pairs, point rule): PARTIAL, top head at depth 0.783; not yet re-measured with intervals.
    "smollm2-135m": {"cpu": INC, "gpu": P},
}


@pytest.fixture(scope="module", params=list(EXPECTED))
def outcome(request, run_claim):
    return run_claim(CLAIM, request.param, EXPECTED, run_ioi)


def test_numbers_match_snapshot(outcome, check_snapshot):
    check_snapshot(outcome, outcome.result.snapshot())


def test_verdict_is_the_declared_one(outcome):
    assert outcome.record.verdict == outcome.record.expected, outcome.record.summary()


def test_the_model_does_the_task(outcome):
    # Patching explains behaviour only if there is some: most pairs kept, a clear clean/corrupted gap.
    result = outcome.result
    assert result.n_kept >= 0.8 * result.n_pairs, result.drop_reasons
    assert result.clean_ld_mean > 1.0 > -1.0 > result.corrupted_ld_mean


def test_patching_is_consistent(outcome):
    result = outcome.result
    # The S2 swap changes one token: patching its embedding (layer 0) turns the corrupted prompt into
    # the clean one, so it must restore everything; by the last layer the answer has moved to END.
    assert result.resid[0].max() == pytest.approx(1.0, abs=1e-3)
    assert result.resid[-1, -1] > 0.5 > np.abs(result.resid[-1, :-1]).max()
    # Attribution patching agrees with exact patching on the ranking of heads.
    assert result.attribution_spearman > 0.7
    assert np.isfinite(result.heads).all() and result.heads.shape == (result.n_layers, result.n_heads)

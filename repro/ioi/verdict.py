"""Verdict for claim 1: do the heads that matter sit where the seed says, at the model's relative depth?

Seed 000 (GPT-2 small, 12 layers): "layers 9-10 contribute most; mid layers 7-8 pass on and integrate
information; low layers 1-3 matter little". Layer l of L sits at relative depth (l + 1/2) / L, so
"layers 9-10 of 12" is the band [0.75, 0.92] at any depth, "7-8 of 12" is [7.5/12, 8.5/12], and the
lowest quarter is (l + 1/2) / L < 1/4 (layers 0-2 of 12). The rule was fixed before any result was seen:

- (a) the head with the largest |effect| lies in the band;
- (b) the band holds the largest share of total |head effect| of all windows of as many consecutive layers;
- (c) the lowest quarter of layers holds less than 10% of it.

REPRODUCED: (a), (b) and (c). PARTIAL: (a) but not both of (b) and (c). NOT_REPRODUCED: not (a).
The mid band's role and the clean logit diff (published: about 3.5 for GPT-2 small) are reported, not judged.
``PUBLISHED`` holds the seed's numbers the report sets ours beside.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from repro.verdicts import Verdict

SEED_LAYERS = 12
BAND = (0.75, 0.92)  # layers 9-10 of 12
MID_BAND = ((7 + 0.5) / SEED_LAYERS, (8 + 0.5) / SEED_LAYERS)  # layers 7-8 of 12: [0.625, 0.708]
LOW_QUARTER = 0.25  # layers 0-2 of 12
LOW_SHARE_MAX = 0.10
REFERENCE_CLEAN_LOGIT_DIFF = 3.5  # GPT-2 small, TransformerLens IOI notebook / seed

# Seed 000's numbers (GPT-2 small) and the reference heads of Wang et al. 2022.
PUBLISHED = {
    "clean logit diff (GPT-2 small)": REFERENCE_CLEAN_LOGIT_DIFF,
    "most important layers": "9-10 (of 12)",
    "mid layers that pass on information": "7-8",
    "layers that matter little": "1-3",
    "name movers": ["9.9", "9.6", "10.0"],
    "negative name movers": ["10.7", "11.10"],
    "S-inhibition heads": ["7.3", "7.9", "8.6", "8.10"],
    "pairs": 100,
}


def relative_depth(layer: int, n_layers: int) -> float:
    return (layer + 0.5) / n_layers


def layers_in(lo: float, hi: float, n_layers: int) -> list[int]:
    return [layer for layer in range(n_layers) if lo <= relative_depth(layer, n_layers) <= hi]


def layer_shares(head_effects: np.ndarray) -> np.ndarray:
    """Each layer's share of total |head effect|: [layer, head] -> [layer], summing to 1."""
    per_layer = np.abs(head_effects).sum(axis=1)
    total = per_layer.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError(
            f"Head effects sum to {total} in absolute value; a verdict needs some nonzero, finite effect."
        )
    return per_layer / total


@dataclass(frozen=True)
class IOIVerdict:
    verdict: Verdict
    top_head: tuple[int, int]
    top_head_in_band: bool  # (a)
    band_layers: list[int]
    band_share: float
    best_window: list[int]  # consecutive layers, as many as the band, with the largest share
    best_window_share: float
    band_is_best: bool  # (b)
    low_layers: list[int]
    low_share: float
    low_is_small: bool  # (c)
    mid_layers: list[int]
    mid_share: float  # of |head effect|, all positions patched
    mid_share_final: float | None  # of |head effect|, final position only patched
    mid_final_fraction: float | None  # the mid band's final-position |effect| / its all-position |effect|
    clean_logit_diff: float | None
    clean_logit_diff_vs_reference: float | None  # ratio to 3.5

    def criteria(self) -> dict:
        return asdict(self)


def ioi_verdict(
    head_effects: np.ndarray,
    final_pos_effects: np.ndarray | None = None,
    clean_logit_diff: float | None = None,
) -> IOIVerdict:
    """The verdict from the [layer, head] matrix of normalised per-head patching effects (all positions)."""
    effects = np.asarray(head_effects, dtype=float)
    if effects.ndim != 2 or min(effects.shape) < 1:
        raise ValueError(f"head_effects must be a [layer, head] matrix, got shape {effects.shape}.")
    n_layers = effects.shape[0]
    shares = layer_shares(effects)
    band = layers_in(*BAND, n_layers)
    if not band:
        raise ValueError(
            f"A {n_layers}-layer model has no layer at relative depth {BAND}; the rule needs >= 2 layers."
        )
    top = np.unravel_index(np.argmax(np.abs(effects)), effects.shape)
    top_head = (int(top[0]), int(top[1]))

    width = len(band)
    windows = [list(range(start, start + width)) for start in range(n_layers - width + 1)]
    window_shares = [float(shares[w].sum()) for w in windows]
    best = int(np.argmax(window_shares))
    band_share = float(shares[band].sum())
    low = [layer for layer in range(n_layers) if relative_depth(layer, n_layers) < LOW_QUARTER]
    low_share = float(shares[low].sum())

    in_band = top_head[0] in band
    band_is_best = band_share >= window_shares[best] - 1e-12  # the band is itself one of the windows
    low_is_small = low_share < LOW_SHARE_MAX
    if in_band and band_is_best and low_is_small:
        verdict = Verdict.REPRODUCED
    elif in_band:
        verdict = Verdict.PARTIAL
    else:
        verdict = Verdict.NOT_REPRODUCED

    mid = layers_in(*MID_BAND, n_layers)
    mid_share_final = mid_final_fraction = None
    if final_pos_effects is not None:
        final = np.asarray(final_pos_effects, dtype=float)
        mid_share_final = float(layer_shares(final)[mid].sum()) if np.abs(final).sum() > 0 else 0.0
        mid_all = float(np.abs(effects[mid]).sum())
        mid_final_fraction = float(np.abs(final[mid]).sum() / mid_all) if mid_all > 0 else None
    return IOIVerdict(
        verdict=verdict,
        top_head=top_head,
        top_head_in_band=in_band,
        band_layers=band,
        band_share=band_share,
        best_window=windows[best],
        best_window_share=window_shares[best],
        band_is_best=band_is_best,
        low_layers=low,
        low_share=low_share,
        low_is_small=low_is_small,
        mid_layers=mid,
        mid_share=float(shares[mid].sum()),
        mid_share_final=mid_share_final,
        mid_final_fraction=mid_final_fraction,
        clean_logit_diff=clean_logit_diff,
        clean_logit_diff_vs_reference=None
        if clean_logit_diff is None
        else clean_logit_diff / REFERENCE_CLEAN_LOGIT_DIFF,
    )


def handoff_layer(resid_effects: np.ndarray) -> int | None:
    """First layer at which patching the final position's residual stream restores more than patching
    any other single position: where the information has been moved to END. [layer, pos] -> layer."""
    resid = np.asarray(resid_effects, dtype=float)
    for layer in range(resid.shape[0]):
        if resid[layer, -1] > np.max(resid[layer, :-1], initial=-np.inf):
            return layer
    return None

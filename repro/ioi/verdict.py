"""Verdict for claim 1: do the heads that matter sit where the seed says, at the model's relative depth?

Seed 000 (GPT-2 small, 12 layers): "layers 9-10 contribute most; mid layers 7-8 pass on and integrate
information; low layers 1-3 matter little". Layer l of L sits at relative depth (l + 1/2) / L, so
"layers 9-10 of 12" is the band [0.75, 0.92] at any depth, "7-8 of 12" is [7.5/12, 8.5/12], and the
lowest quarter is (l + 1/2) / L < 1/4 (layers 0-2 of 12). The rule, fixed before any result was seen, has
three parts, each a statistic of the kept pairs with a 95% bootstrap interval over them
(``repro.intervals``; the pairs are the independent units):

- (a) the relative depth of the head with the largest |effect| lies in the band's layers (percentile
  interval: the statistic takes a few discrete values);
- (b) the band's share of total |head effect| exceeds that of every other window of as many consecutive
  layers (the paired margin band - best other window > 0; BCa);
- (c) the lowest quarter of layers holds less than 10% of it (BCa).

Gates: the model does the task (>= 80% of pairs kept, mean clean logit diff > 1, mean corrupted < -1) and
>= 20 kept pairs. Combination: a failed gate -> INCONCLUSIVE; (a) NOT_REPRODUCED -> NOT_REPRODUCED; (a)
undecided -> INCONCLUSIVE; (a) reproduced and (b), (c) reproduced -> REPRODUCED; (a) reproduced and (b) or
(c) decided not -> PARTIAL; otherwise INCONCLUSIVE. The mid band's role and the clean logit diff (published:
about 3.5 for GPT-2 small) are reported, not judged. ``PUBLISHED`` holds the seed's numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from repro.intervals import bootstrap_distribution, bootstrap_estimate, resampled_means
from repro.verdicts import Estimate, Gate, Part, Region, Ruling, Verdict, judge

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
class IOICriteria:
    """The rule's quantities on all kept pairs (point values; their intervals are in the ruling)."""

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

    def as_dict(self) -> dict:
        return asdict(self)


def windows_of(width: int, n_layers: int) -> list[list[int]]:
    """Every run of ``width`` consecutive layers."""
    return [list(range(start, start + width)) for start in range(n_layers - width + 1)]


def band_layers(n_layers: int) -> list[int]:
    band = layers_in(*BAND, n_layers)
    if not band:
        raise ValueError(
            f"A {n_layers}-layer model has no layer at relative depth {BAND}; the rule needs >= 2 layers."
        )
    return band


def low_layers(n_layers: int) -> list[int]:
    return [layer for layer in range(n_layers) if relative_depth(layer, n_layers) < LOW_QUARTER]


def ioi_criteria(
    head_effects: np.ndarray,
    final_pos_effects: np.ndarray | None = None,
    clean_logit_diff: float | None = None,
) -> IOICriteria:
    """The rule's quantities from the [layer, head] matrix of normalised per-head patching effects."""
    effects = np.asarray(head_effects, dtype=float)
    if effects.ndim != 2 or min(effects.shape) < 1:
        raise ValueError(f"head_effects must be a [layer, head] matrix, got shape {effects.shape}.")
    n_layers = effects.shape[0]
    shares = layer_shares(effects)
    band = band_layers(n_layers)
    top = np.unravel_index(np.argmax(np.abs(effects)), effects.shape)
    top_head = (int(top[0]), int(top[1]))
    windows = windows_of(len(band), n_layers)
    window_shares = [float(shares[w].sum()) for w in windows]
    best = int(np.argmax(window_shares))
    band_share = float(shares[band].sum())
    low = low_layers(n_layers)
    low_share = float(shares[low].sum())

    mid = layers_in(*MID_BAND, n_layers)
    mid_share_final = mid_final_fraction = None
    if final_pos_effects is not None:
        final = np.asarray(final_pos_effects, dtype=float)
        mid_share_final = float(layer_shares(final)[mid].sum()) if np.abs(final).sum() > 0 else 0.0
        mid_all = float(np.abs(effects[mid]).sum())
        mid_final_fraction = float(np.abs(final[mid]).sum() / mid_all) if mid_all > 0 else None
    return IOICriteria(
        top_head=top_head,
        top_head_in_band=top_head[0] in band,
        band_layers=band,
        band_share=band_share,
        best_window=windows[best],
        best_window_share=window_shares[best],
        band_is_best=band_share >= window_shares[best] - 1e-12,  # the band is itself one of the windows
        low_layers=low,
        low_share=low_share,
        low_is_small=low_share < LOW_SHARE_MAX,
        mid_layers=mid,
        mid_share=float(shares[mid].sum()),
        mid_share_final=mid_share_final,
        mid_final_fraction=mid_final_fraction,
        clean_logit_diff=clean_logit_diff,
        clean_logit_diff_vs_reference=None
        if clean_logit_diff is None
        else clean_logit_diff / REFERENCE_CLEAN_LOGIT_DIFF,
    )


# ---- the ruling: the same quantities with intervals over the kept pairs ----

DEPTH = "(a) top head's relative depth in the band"
BAND_BEST = "(b) band share minus the best other window's"
LOW = "(c) lowest-quarter share"
MIN_KEPT_FRACTION = 0.8
MIN_KEPT = 20
CLEAN_LD_MIN = 1.0  # the model prefers IO on clean prompts, and S on corrupted ones (below -1)


@dataclass(frozen=True)
class PairEffects:
    """Per kept pair, what the bootstrap resamples: logit diffs clean, corrupted and with each head patched."""

    clean_ld: np.ndarray  # [pair]
    corrupted_ld: np.ndarray  # [pair]
    heads: np.ndarray  # [pair, layer, head] patched logit diff (all positions)

    @property
    def n(self) -> int:
        return len(self.clean_ld)

    def effects(self, idx: np.ndarray) -> np.ndarray:
        """Normalised head effects of each resample: [rows, k] pair indices -> [rows, layer, head]
        (means over the resample's pairs, then (patched - corrupted) / (clean - corrupted))."""
        c, x = resampled_means(idx, self.clean_ld), resampled_means(idx, self.corrupted_ld)
        heads = resampled_means(idx, self.heads)
        return (heads - x[:, None, None]) / (c - x)[:, None, None]


def _shares(effects: np.ndarray) -> np.ndarray:
    """[rows, layer, head] -> [rows, layer] shares of total |head effect|."""
    per_layer = np.abs(effects).sum(-1)
    return per_layer / per_layer.sum(-1, keepdims=True)


@dataclass(frozen=True)
class IOIRuling:
    ruling: Ruling
    estimates: dict[str, Estimate]  # every statistic the rule uses or the report shows, with its interval
    top_head_stability: float  # fraction of resamples whose top head is the full sample's top head


def ioi_ruling(pairs: PairEffects, *, n_pairs: int, units_by_profile: dict[str, int] | None = None) -> IOIRuling:
    """Claim 1's verdict from 95% bootstrap intervals over the kept pairs (see the module docstring)."""
    n_layers = pairs.heads.shape[1]
    band, low = band_layers(n_layers), low_layers(n_layers)
    others = [w for w in windows_of(len(band), n_layers) if w != band]

    def top_flat(idx):
        e = np.abs(pairs.effects(idx))
        return e.reshape(len(e), -1).argmax(-1)

    def depth(idx):
        return (top_flat(idx) // pairs.heads.shape[2] + 0.5) / n_layers

    def band_share(idx):
        return _shares(pairs.effects(idx))[:, band].sum(-1)

    def best_window_share(idx):
        shares = _shares(pairs.effects(idx))
        return np.max([shares[:, w].sum(-1) for w in windows_of(len(band), n_layers)], axis=0)

    def margin(idx):
        shares = _shares(pairs.effects(idx))
        best_other = np.max([shares[:, w].sum(-1) for w in others], axis=0) if others else np.zeros(len(shares))
        return shares[:, band].sum(-1) - best_other

    def low_share(idx):
        return _shares(pairs.effects(idx))[:, low].sum(-1)

    n = pairs.n
    estimates = {
        DEPTH: bootstrap_estimate(n, depth, units="pairs", method="percentile"),
        BAND_BEST: bootstrap_estimate(n, margin, units="pairs"),
        LOW: bootstrap_estimate(n, low_share, units="pairs"),
        "band share": bootstrap_estimate(n, band_share, units="pairs"),
        "best-window share": bootstrap_estimate(n, best_window_share, units="pairs"),
    }
    # The band's layers cover relative depths [min/L, (max+1)/L); a layer's depth (l + 1/2)/L lies inside
    # exactly when the layer is in the band.
    parts = [
        Part(DEPTH, estimates[DEPTH], Region(band[0] / n_layers, (band[-1] + 1) / n_layers)),
        Part(BAND_BEST, estimates[BAND_BEST], Region(low=0.0)),
        Part(LOW, estimates[LOW], Region(high=LOW_SHARE_MAX)),
    ]
    clean, corrupted = float(pairs.clean_ld.mean()), float(pairs.corrupted_ld.mean())
    gates = [
        Gate("the model does the task", n >= MIN_KEPT_FRACTION * n_pairs and clean > CLEAN_LD_MIN > -CLEAN_LD_MIN > corrupted,
             f"{n}/{n_pairs} pairs kept (need >= {MIN_KEPT_FRACTION:.0%}); mean logit diff clean {clean:.3g} "
             f"(need > {CLEAN_LD_MIN:g}), corrupted {corrupted:.3g} (need < {-CLEAN_LD_MIN:g})"),
        Gate("enough pairs for an interval", n >= MIN_KEPT, f"{n} kept pairs (need >= {MIN_KEPT})"),
    ]
    ruling = judge(parts, gates, combine=combine, units_by_profile=units_by_profile)
    full_top = top_flat(np.arange(n)[None, :])[0]
    stability = float(np.mean(bootstrap_distribution(n, top_flat) == full_top))
    return IOIRuling(ruling, estimates, stability)


def combine(verdicts: dict[str, Verdict]) -> Verdict:
    """(a) decides first; then (b) and (c) (see the module docstring)."""
    a, rest = verdicts[DEPTH], (verdicts[BAND_BEST], verdicts[LOW])
    if a != Verdict.REPRODUCED:
        return a  # NOT_REPRODUCED or INCONCLUSIVE
    if all(v == Verdict.REPRODUCED for v in rest):
        return Verdict.REPRODUCED
    return Verdict.PARTIAL if Verdict.NOT_REPRODUCED in rest else Verdict.INCONCLUSIVE


def handoff_layer(resid_effects: np.ndarray) -> int | None:
    """First layer at which patching the final position's residual stream restores more than patching
    any other single position: where the information has been moved to END. [layer, pos] -> layer."""
    resid = np.asarray(resid_effects, dtype=float)
    for layer in range(resid.shape[0]):
        if resid[layer, -1] > np.max(resid[layer, :-1], initial=-np.inf):
            return layer
    return None

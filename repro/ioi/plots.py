"""Plot: the figures of claim 1. Each function takes an ``IOIResult`` and a path and returns the path.

Effects are normalised logit-diff recovery (1 = patching restores the clean answer fully), drawn on a
diverging colormap centred at 0 so helpful (red) and harmful (blue) components read at a glance.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from repro.ioi.verdict import BAND, MID_BAND, layers_in  # noqa: E402

if TYPE_CHECKING:
    from repro.ioi.experiment import IOIResult

CMAP = "RdBu_r"
EFFECT_LABEL = "logit diff recovered (patched - corr) / (clean - corr)"


def _centred(ax, matrix: np.ndarray, fig):
    limit = float(np.abs(matrix).max()) or 1.0
    image = ax.imshow(matrix, cmap=CMAP, vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, label=EFFECT_LABEL, shrink=0.9)
    return image


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _layer_ticks(ax, n_layers: int, axis: str = "y"):
    step = 1 if n_layers <= 16 else 2
    ticks = list(range(0, n_layers, step))
    (ax.set_yticks if axis == "y" else ax.set_xticks)(ticks)


def plot_head_heatmap(result: IOIResult, path: str | Path, final_only: bool = False) -> Path:
    """Layer x head map of per-head patching (all positions, or the final position only)."""
    matrix = result.heads_final if final_only else result.heads
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * matrix.shape[1], 1.5 + 0.22 * matrix.shape[0]))
    _centred(ax, matrix, fig)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(matrix.shape[1]))
    _layer_ticks(ax, matrix.shape[0])
    where = "final position only" if final_only else "all positions"
    ax.set_title(
        f"{result.model}: IOI activation patching per head ({where})\n{result.n_kept} pairs, {result.corruption}"
    )
    return _save(fig, path)


def plot_resid_map(result: IOIResult, path: str | Path) -> Path:
    """Layer x position map of residual-stream patching, x labelled with a representative prompt's tokens."""
    matrix = result.resid
    fig, ax = plt.subplots(figsize=(2.0 + 0.55 * matrix.shape[1], 1.5 + 0.2 * matrix.shape[0]))
    _centred(ax, matrix, fig)
    ax.set_xticks(range(matrix.shape[1]))
    ax.set_xticklabels([repr(t)[1:-1] for t in result.resid_tokens], rotation=60, ha="right")
    ax.set_xlabel("position (token of a representative prompt)")
    ax.set_ylabel("layer (residual stream entering it)")
    _layer_ticks(ax, matrix.shape[0])
    ax.set_title(
        f"{result.model}: IOI residual-stream patching\n{result.resid_n_pairs} pairs of template {result.resid_template}"
    )
    return _save(fig, path)


def plot_layer_bars(result: IOIResult, path: str | Path) -> Path:
    """Per layer: attention- and MLP-output patching effects, and the layer's share of |head effect|,
    with the seed's bands (layers 9-10 and 7-8 of 12, by relative depth) shaded."""
    n_layers = len(result.attn_layers)
    x = np.arange(n_layers)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.0, 0.3 * n_layers + 2), 6), sharex=True)
    for ax in (top, bottom):
        for (lo, hi), colour, label in (
            (BAND, "tab:orange", "layers 9-10 of 12"),
            (MID_BAND, "tab:green", "layers 7-8 of 12"),
        ):
            band = layers_in(lo, hi, n_layers)
            if band:
                ax.axvspan(band[0] - 0.5, band[-1] + 0.5, color=colour, alpha=0.15, label=label)
    top.bar(x - 0.2, result.attn_layers, width=0.4, label="attention output")
    top.bar(x + 0.2, result.mlp_layers, width=0.4, label="MLP output")
    top.axhline(0, color="black", lw=0.6)
    top.set_ylabel("logit diff recovered")
    top.legend(fontsize=7, ncol=2)
    bottom.bar(x, result.layer_shares, color="tab:purple", label="share of |head effect|")
    bottom.set_ylabel("share of total |head effect|")
    bottom.set_xlabel("layer")
    bottom.legend(fontsize=7)
    _layer_ticks(bottom, n_layers, axis="x")
    top.set_title(f"{result.model}: IOI patching per layer ({result.n_kept} pairs)")
    return _save(fig, path)


def plot_attribution_scatter(result: IOIResult, path: str | Path) -> Path:
    """Attribution patching vs exact patching, one dot per head, with the y = x line."""
    exact, estimate = result.heads.ravel(), result.attribution.ravel()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(exact, estimate, s=10, alpha=0.7)
    limit = float(max(np.abs(exact).max(), np.abs(estimate).max())) * 1.05 or 1.0
    ax.plot([-limit, limit], [-limit, limit], color="grey", lw=0.8, ls="--")
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_xlabel("exact patching effect")
    ax.set_ylabel("attribution patching estimate")
    ax.set_title(f"{result.model}: attribution vs exact\nSpearman {result.attribution_spearman:.3f}")
    return _save(fig, path)

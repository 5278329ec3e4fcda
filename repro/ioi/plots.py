"""Plot: the figures of claim 1. Each function takes plain data (effect matrices, labels), a title and a
path, saves with ``repro.files.save_figure`` and returns the path; ``repro.ioi.run`` decides what to draw.

Effects are normalised logit-diff recovery (1 = patching restores the clean answer fully), drawn on a
diverging colormap centred at 0 so helpful (red) and harmful (blue) components read at a glance.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from repro.files import save_figure  # noqa: E402
from repro.ioi.verdict import BAND, MID_BAND, layers_in  # noqa: E402

CMAP = "RdBu_r"
EFFECT_LABEL = "logit diff recovered (patched - corr) / (clean - corr)"


def _centred(ax, matrix: np.ndarray, fig):
    limit = float(np.abs(matrix).max()) or 1.0
    image = ax.imshow(matrix, cmap=CMAP, vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, label=EFFECT_LABEL, shrink=0.9)
    return image


def _layer_ticks(ax, n_layers: int, axis: str = "y"):
    step = 1 if n_layers <= 16 else 2
    ticks = list(range(0, n_layers, step))
    (ax.set_yticks if axis == "y" else ax.set_xticks)(ticks)


def plot_head_heatmap(matrix: np.ndarray, path: str | Path, *, title: str) -> Path:
    """Layer x head map of per-head patching effects, ``matrix[layer, head]``."""
    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * matrix.shape[1], 1.5 + 0.22 * matrix.shape[0]))
    _centred(ax, matrix, fig)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(matrix.shape[1]))
    _layer_ticks(ax, matrix.shape[0])
    ax.set_title(title)
    return save_figure(fig, path)


def plot_resid_map(matrix: np.ndarray, tokens: list[str], path: str | Path, *, title: str) -> Path:
    """Layer x position map of residual-stream patching, ``matrix[layer, pos]``, x labelled with ``tokens``
    (a representative prompt's)."""
    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(2.0 + 0.55 * matrix.shape[1], 1.5 + 0.2 * matrix.shape[0]))
    _centred(ax, matrix, fig)
    ax.set_xticks(range(matrix.shape[1]))
    ax.set_xticklabels([repr(t)[1:-1] for t in tokens], rotation=60, ha="right")
    ax.set_xlabel("position (token of a representative prompt)")
    ax.set_ylabel("layer (residual stream entering it)")
    _layer_ticks(ax, matrix.shape[0])
    ax.set_title(title)
    return save_figure(fig, path)


def plot_layer_bars(
    attn_layers: np.ndarray, mlp_layers: np.ndarray, layer_shares: np.ndarray, path: str | Path, *, title: str
) -> Path:
    """Per layer: attention- and MLP-output patching effects, and the layer's share of |head effect|,
    with the seed's bands (layers 9-10 and 7-8 of 12, by relative depth) shaded."""
    n_layers = len(attn_layers)
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
    top.bar(x - 0.2, attn_layers, width=0.4, label="attention output")
    top.bar(x + 0.2, mlp_layers, width=0.4, label="MLP output")
    top.axhline(0, color="black", lw=0.6)
    top.set_ylabel("logit diff recovered")
    top.legend(fontsize=7, ncol=2)
    bottom.bar(x, layer_shares, color="tab:purple", label="share of |head effect|")
    bottom.set_ylabel("share of total |head effect|")
    bottom.set_xlabel("layer")
    bottom.legend(fontsize=7)
    _layer_ticks(bottom, n_layers, axis="x")
    top.set_title(title)
    return save_figure(fig, path)


def plot_attribution_scatter(exact: np.ndarray, estimate: np.ndarray, path: str | Path, *, title: str) -> Path:
    """Attribution patching vs exact patching, one dot per head, with the y = x line."""
    exact, estimate = np.ravel(exact), np.ravel(estimate)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(exact, estimate, s=10, alpha=0.7)
    limit = float(max(np.abs(exact).max(), np.abs(estimate).max())) * 1.05 or 1.0
    ax.plot([-limit, limit], [-limit, limit], color="grey", lw=0.8, ls="--")
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_xlabel("exact patching effect")
    ax.set_ylabel("attribution patching estimate")
    ax.set_title(title)
    return save_figure(fig, path)

"""Claim 4's figures; each function takes plain data and a path and saves with repro.files.save_figure."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from repro.files import figure_path, save_figure  # noqa: E402
from repro.sdc.injection import LOCATIONS  # noqa: E402


def detection_heatmap(faults: list[dict], path: Path, title: str) -> Path:
    """Detection rate by bit (rows) x location (columns); blank where no fault was injected."""
    locations = list(LOCATIONS)
    rate = np.full((32, len(locations)), np.nan)
    for b in range(32):
        for j, loc in enumerate(locations):
            cell = [f["detected"] for f in faults if f["bits"][0] == b and f["location"] == loc]
            if cell:
                rate[b, j] = np.mean(cell)
    fig, ax = plt.subplots(figsize=(5, 7))
    im = ax.imshow(rate, aspect="auto", cmap="viridis", vmin=0, vmax=1, origin="lower")
    ax.set_xticks(range(len(locations)), locations)
    ax.set_ylabel("bit (31 sign, 23-30 exponent, 0-22 mantissa)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="detected fraction")
    return save_figure(fig, path)


def detection_vs_harm(faults: list[dict], path: Path, title: str) -> Path:
    """A 2 x 2 table (detected x harmful) per location."""
    fig, axes = plt.subplots(1, len(LOCATIONS), figsize=(2.2 * len(LOCATIONS), 2.6))
    for ax, loc in zip(axes, LOCATIONS):
        table = np.zeros((2, 2), dtype=int)
        for f in faults:
            if f["location"] == loc:
                table[int(f["detected"]), int(f["harmful"])] += 1
        ax.imshow(table, cmap="Blues")
        for (i, j), n in np.ndenumerate(table):
            ax.text(j, i, str(n), ha="center", va="center")
        ax.set_xticks([0, 1], ["benign", "harmful"])
        ax.set_yticks([0, 1], ["missed", "detected"])
        ax.set_title(loc)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def tightness(clean: dict[str, list[float]], faults: list[dict], path: Path, title: str) -> Path:
    """Left: how much of each bound clean calls use (<= 1). Right: injected |perturbation| (epsilon),
    detected vs missed."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for check, values in clean.items():
        values = [v for v in values if math.isfinite(v) and v > 0]
        if values:
            left.hist(values, bins=40, range=(0, 1), histtype="step", label=check)
    left.set_xlabel("utilisation of the bound on clean calls (1 = at the bound)")
    left.set_ylabel("attention calls")
    left.legend(fontsize=6)
    for detected, color in ((True, "tab:green"), (False, "tab:red")):
        eps = [float(f["epsilon"]) for f in faults if f["detected"] == detected]
        eps = [math.log10(e) if e > 0 and math.isfinite(e) else 40.0 for e in eps]  # Inf/NaN plotted at 40
        right.hist(eps, bins=40, histtype="step", color=color, label="detected" if detected else "missed")
    right.set_xlabel("log10 |injected perturbation| (40: Inf/NaN)")
    right.legend()
    fig.suptitle(title)
    return save_figure(fig, path)


def propagation(faults: list[dict], path: Path, title: str) -> Path:
    """Median relative change of the residual stream by layers after the injected one, per location,
    harmful faults only."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for loc in LOCATIONS:
        rows = [f["propagation"] for f in faults if f["location"] == loc and f["harmful"]]
        if not rows:
            continue
        depth = max(map(len, rows))
        median = []
        for d in range(depth):
            vals = [np.inf if r[d] is None else r[d] for r in rows if d < len(r)]
            median.append(np.median(vals))
        ax.plot(range(depth), np.clip(median, 1e-8, 1e8), marker="o", ms=3, label=loc)
    ax.set_yscale("log")
    ax.set_xlabel("layers after the injected one")
    ax.set_ylabel("median relative change of the residual stream")
    ax.legend(fontsize=7)
    ax.set_title(title)
    return save_figure(fig, path)


def plot_all(result, out_dir: Path) -> list[Path]:
    m = result.model
    return [
        detection_heatmap(result.faults, figure_path(out_dir, m, "sdc", "detection-by-bit"), f"{m}: detection rate"),
        detection_vs_harm(result.faults, figure_path(out_dir, m, "sdc", "detection-vs-harm"), f"{m}: detection vs harm"),
        tightness(result.tightness, result.faults, figure_path(out_dir, m, "sdc", "tightness"), f"{m}: bound tightness"),
        propagation(result.faults, figure_path(out_dir, m, "sdc", "propagation"), f"{m}: error propagation"),
    ]

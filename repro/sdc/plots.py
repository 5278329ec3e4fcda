"""Claim 4's figures; each function takes plain data and a path and saves with repro.files.save_figure.
Non-finite values are never clipped silently: they are drawn at the plot's edge with their own marker
and legend entry."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from repro.files import figure_path, save_figure  # noqa: E402
from repro.sdc.detection import DETECTORS, TRIVIAL  # noqa: E402
from repro.sdc.injection import LOCATIONS  # noqa: E402
from repro.sdc.recall import as_float, harmful  # noqa: E402
from repro.sdc.strata import STRATA  # noqa: E402


def detection_heatmap(faults: list[dict], path: Path, title: str) -> Path:
    """Detection rate by bit (rows) x location (columns), one panel per detector; blank where no fault."""
    fig, axes = plt.subplots(1, len(DETECTORS), figsize=(4.5 * len(DETECTORS), 7))
    locations = list(LOCATIONS)
    width = 1 + max((b for f in faults for b in f["bits"]), default=31)
    for ax, detector in zip(axes, DETECTORS):
        rate = np.full((width, len(locations)), np.nan)
        for b in range(width):
            for j, loc in enumerate(locations):
                cell = [f[detector]["detected"] for f in faults if b in f["bits"] and f["location"] == loc]
                if cell:
                    rate[b, j] = np.mean(cell)
        im = ax.imshow(rate, aspect="auto", cmap="viridis", vmin=0, vmax=1, origin="lower")
        ax.set_xticks(range(len(locations)), locations)
        ax.set_title(detector)
    axes[0].set_ylabel("bit (float32: 31 sign, 23-30 exponent, 0-22 mantissa)")
    fig.colorbar(im, ax=axes, label="detected fraction")
    fig.suptitle(title)
    return save_figure(fig, path)


def across_models(rows: dict[str, list[dict]], path: Path, title: str) -> Path:
    """Recall on harmful faults per stratum, for each model (bars) and detector (panels)."""
    fig, axes = plt.subplots(1, len(DETECTORS), figsize=(6 * len(DETECTORS), 3.6), sharey=True)
    width = 0.8 / max(len(rows), 1)
    for ax, detector in zip(axes, DETECTORS):
        for i, (model, faults) in enumerate(rows.items()):
            for j, stratum in enumerate(STRATA):
                group = [f for f in harmful(faults) if f["stratum"] == stratum]
                caught = sum(f[detector]["detected"] for f in group)
                ax.bar(j + i * width, caught / len(group) if group else 0, width, color=f"C{i}",
                       label=model if j == 0 else None)
                ax.text(j + i * width, (caught / len(group) if group else 0) + 0.02, f"{caught}/{len(group)}",
                        ha="center", fontsize=5, rotation=90)  # k/n: 0/0 = no harmful fault in the stratum
        ax.set_xticks(np.arange(len(STRATA)) + width * (len(rows) - 1) / 2, STRATA, rotation=30, fontsize=7)
        ax.set_title(detector)
        ax.set_ylim(0, 1.2)
    axes[0].set_ylabel("recall on harmful faults")
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


NONFINITE_AT = 42.0  # log10 position of Inf/NaN: above float32's largest value (10^38.5)


def _log_use(value) -> float:
    v = as_float(value)
    return NONFINITE_AT if not math.isfinite(v) else math.log10(max(v, 1e-12))


def bound_gap(faults: list[dict], path: Path, title: str) -> Path:
    """Each bound's utilisation on the harmful faults (log10; 0 = at the bound, > 0 = violated), detected
    ones and escapes apart: how far an escape stayed inside every bound."""
    checks = [c for c in DETECTORS["bounds"].CHECKS if c not in TRIVIAL]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for i, check in enumerate(checks):
        for detected, color, dx in ((True, "tab:green", -0.15), (False, "tab:red", 0.15)):
            ys = [_log_use(f["bounds"]["use"][check]) for f in harmful(faults) if f["bounds"]["detected"] == detected]
            ax.scatter(np.full(len(ys), i + dx), ys, s=6, alpha=0.4, color=color,
                       label=("detected" if detected else "missed") if i == 0 else None)
    ax.axhline(0, color="black", lw=0.8)
    ax.axhline(NONFINITE_AT, color="gray", lw=0.5, ls=":")
    ax.text(len(checks) - 0.5, NONFINITE_AT + 0.5, "Inf/NaN", fontsize=7, ha="right")
    ax.set_xticks(range(len(checks)), checks, rotation=20, fontsize=7)
    ax.set_ylabel("log10 utilisation (0: at the bound)")
    ax.legend(fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


def loss_vs_violation(faults: list[dict], path: Path, title: str) -> Path:
    """The change of the window's mean loss (the seed's harm) against the bounds detector's largest
    utilisation, every fault."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for detected, color in ((True, "tab:green"), (False, "tab:red")):
        group = [f for f in faults if f["bounds"]["detected"] == detected]
        xs = [_log_use(max((as_float(u) for u in f["bounds"]["use"].values()), key=lambda v: (math.isnan(v), v)))
              for f in group]
        change = [abs(as_float(f["loss_change"])) for f in group]
        ys = [math.log10(max(c, 1e-9)) if math.isfinite(c) else 4.0 for c in change]  # non-finite loss at 4
        ax.scatter(xs, ys, s=6, alpha=0.4, color=color, label="detected" if detected else "missed")
    ax.axvline(0, color="black", lw=0.8)
    ax.text(-11.5, 4.1, "non-finite loss", fontsize=7)
    ax.set_xlabel(f"log10 largest bound utilisation (> 0: violated; {NONFINITE_AT:g}: Inf/NaN)")
    ax.set_ylabel("log10 |change of mean loss|, nats")
    ax.legend(fontsize=7)
    ax.set_title(title)
    return save_figure(fig, path)


def tightness(clean: dict[str, dict[str, list[float]]], path: Path, title: str) -> Path:
    """How much of each bound (left) and checksum tolerance (right) clean calls use (<= 1)."""
    fig, axes = plt.subplots(1, len(clean), figsize=(5.5 * len(clean), 3.8))
    for ax, (detector, checks) in zip(np.atleast_1d(axes), clean.items()):
        for check, values in checks.items():
            values = [v for v in values if math.isfinite(v) and v > 0]
            if values:
                ax.hist(np.log10(values), bins=40, histtype="step", label=check)
        ax.set_xlabel(f"log10 utilisation on clean calls ({detector}; 0 = at the bound)")
        ax.legend(fontsize=6)
    np.atleast_1d(axes)[0].set_ylabel("attention calls")
    fig.suptitle(title)
    return save_figure(fig, path)


def propagation(faults: list[dict], path: Path, title: str) -> Path:
    """Median relative change of the residual stream by layers after the injected one, per location, over
    the harmful faults whose change is finite; the share that became non-finite is drawn on its own axis."""
    fig, (ax, share) = plt.subplots(2, 1, figsize=(6, 5.2), sharex=True, height_ratios=(3, 1))
    for loc in LOCATIONS:
        rows = [f["propagation"] for f in harmful(faults) if f["location"] == loc]
        if not rows:
            continue
        depth = max(map(len, rows))
        median, nonfinite = [], []
        for d in range(depth):
            vals = [r[d] for r in rows if d < len(r)]
            finite = [v for v in vals if v is not None]
            median.append(np.median(finite) if finite else np.nan)
            nonfinite.append(1 - len(finite) / len(vals))
        line = ax.plot(range(depth), median, marker="o", ms=3, label=loc)[0]
        share.plot(range(depth), nonfinite, marker="x", ms=4, color=line.get_color())
    ax.set_yscale("log")
    ax.set_ylabel("median relative change\n(finite ones)")
    share.set_ylabel("share\nnon-finite")
    share.set_ylim(-0.05, 1.05)
    share.set_xlabel("layers after the injected one")
    ax.legend(fontsize=7)
    ax.set_title(title)
    return save_figure(fig, path)


def plot_all(result, out_dir: Path) -> list[Path]:
    m = result.model
    models = {m: result.faults}
    if result.companion is not None:
        models["distilbert-random"] = result.companion.faults
    return [
        detection_heatmap(result.faults, figure_path(out_dir, m, "sdc", "detection-by-bit"), f"{m}: detection rate"),
        across_models(models, figure_path(out_dir, m, "sdc", "detection-across-models"),
                      f"{m} vs DistilBERT (random init, bidirectional): recall by stratum"),
        bound_gap(result.faults, figure_path(out_dir, m, "sdc", "bound-gap"), f"{m}: bound utilisation, harmful faults"),
        loss_vs_violation(result.faults, figure_path(out_dir, m, "sdc", "loss-vs-violation"),
                          f"{m}: loss change vs violation"),
        tightness(result.tightness, figure_path(out_dir, m, "sdc", "tightness"), f"{m}: clean-call utilisation"),
        propagation(result.faults, figure_path(out_dir, m, "sdc", "propagation"), f"{m}: error propagation"),
    ]

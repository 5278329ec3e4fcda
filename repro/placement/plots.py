"""The figures of claim 6: each function takes plain data and a path and saves with repro.files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from repro.files import save_figure, write_atomic  # noqa: E402

MODE_COLOURS = {"local": "#4C72B0", "remote": "#DD8452", "hybrid": "#55A868"}
NAMED = {"LLLL": "local", "RRRR": "remote", "LRRL": "hybrid"}


def plot_mode_bars(rows: list[dict], model: str, path: str | Path) -> Path:
    """Per measured rate, grouped bars: per stage (and the total), one bar per mode; the hatched part is time
    on the link. ``rows``: the combined table (rate_mbit, stage, mode, upload_s, download_s, wall_s, seed_s)."""
    rates = [r for r in dict.fromkeys(row["rate_mbit"] for row in rows) if r is not None]
    modes = list(MODE_COLOURS)
    fig, axes = plt.subplots(1, len(rates), figsize=(5.5 * len(rates), 4), squeeze=False)
    width = 0.8 / len(modes)
    for ax, rate in zip(axes[0], rates):
        at = [row for row in rows if row["rate_mbit"] == rate]
        stages = list(dict.fromkeys(row["stage"] for row in at))
        x = np.arange(len(stages))
        for i, mode in enumerate(modes):
            get = {row["stage"]: row for row in at if row["mode"] == mode}
            ax.bar(x + i * width, [get[s]["wall_s"] for s in stages], width, color=MODE_COLOURS[mode], label=mode)
            ax.bar(x + i * width, [get[s]["upload_s"] + get[s]["download_s"] for s in stages], width, color="none",
                   edgecolor="black", hatch="//", linewidth=0)
            ax.scatter(x + i * width, [get[s]["seed_s"] for s in stages], marker="_", s=200, color="black", zorder=3,
                       label="seed" if i == 0 else None)
        ax.set_xticks(x + width * (len(modes) - 1) / 2, stages)
        ax.set_title(f"{model}: {rate:g} Mbit/s")
        ax.set_ylabel("seconds (median of the recorded runs)")
    axes[0][0].legend(title="mode (hatched: link)", fontsize=8)
    return save_figure(fig, path)


def plot_placement_map(grid: dict, points: list[dict], model: str, path: str | Path) -> Path:
    """Which placement the cost model predicts fastest at each link rate (x, log) and workstation slowdown
    (y), Hybrid's region outlined where it wins by >= 5%; the measured points carry their headline."""
    rates, slowdowns = np.array(grid["rates"]), np.array(grid["slowdowns"])
    labels = sorted({b for row in grid["best"] for b in row})
    index = np.array([[labels.index(b) for b in row] for row in grid["best"]])
    palette = plt.get_cmap("tab20")(np.linspace(0, 1, 20))
    colours = [MODE_COLOURS.get(NAMED.get(label, ""), palette[(3 * i + 1) % 20]) for i, label in enumerate(labels)]
    fig, ax = plt.subplots(figsize=(8.5, 5))
    ax.pcolormesh(rates, slowdowns, index, cmap=ListedColormap(colours), vmin=-0.5, vmax=len(labels) - 0.5,
                  shading="nearest")
    margin = np.array(grid["hybrid_margin"])
    ax.contour(rates, slowdowns, margin, levels=[np.log(1.05)], colors="black", linewidths=1.2)
    for i, label in enumerate(labels):
        ax.plot([], [], "s", color=colours[i], label=f"{label} ({NAMED[label]})" if label in NAMED else label)
    ax.plot([], [], color="black", label="Hybrid beats Local and Remote by 5% (left)")
    for p in points:
        ax.scatter(p["rate_mbit"], p["slowdown"], marker="o", s=70, color="white", edgecolor="black", zorder=4)
        ax.annotate(f"measured: {p['headline'].lower()}", (p["rate_mbit"], p["slowdown"]), textcoords="offset points",
                    xytext=(6, 6), fontsize=8)
    ax.set_xscale("log")
    ax.set(xlabel="link rate, Mbit/s (tbf; measured efficiency applied)",
           ylabel="workstation slowdown on Collect/Patch (x remote)",
           title=f"{model}: fastest placement predicted (Filter, Collect, Patch, Plot; L/R)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save_figure(fig, path)


def plot_optimiser(rows: list[dict], path: str | Path) -> Path:
    """All 16 placements at each rate: predicted wall time (bars), measured where run (dots)."""
    rates = list(dict.fromkeys(r["rate_mbit"] for r in rows))
    fig, axes = plt.subplots(len(rates), 1, figsize=(10, 2.6 * len(rates)), squeeze=False)
    for ax, rate in zip(axes[:, 0], rates):
        at = [r for r in rows if r["rate_mbit"] == rate]
        x = np.arange(len(at))
        ax.bar(x, [r["predicted_s"] for r in at], color="#BBBBBB", label="predicted (cost model)")
        measured = [(i, r["measured_s"]) for i, r in enumerate(at) if r["measured_s"] is not None]
        ax.scatter([i for i, _ in measured], [m for _, m in measured], color="black", zorder=3, label="measured")
        ax.set_xticks(x, [r["name"] if r["name"] != r["placement"] else r["placement"] for r in at], rotation=60,
                      ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel(f"wall s @ {rate:g} Mbit/s", fontsize=8)
    axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xlabel("placement (Filter, Collect, Patch, Plot; L = local, R = remote), fastest predicted first")
    return save_figure(fig, path)


def save_png(figure: bytes, path: str | Path) -> Path:
    """A figure the pipeline's Plot module rendered, as delivered to the workstation."""
    return write_atomic(path, figure)

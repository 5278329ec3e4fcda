"""The figures of claim 6: each function takes plain data and a path and saves with repro.files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from repro.files import save_figure, write_atomic  # noqa: E402

MODE_COLOURS = {"local": "#4C72B0", "remote": "#DD8452", "hybrid": "#55A868"}


def plot_mode_bars(rows: list[dict], model: str, path: str | Path) -> Path:
    """Grouped bars: per stage (and the total), one bar per mode; the hatched part is time on the link.
    ``rows``: the combined table (stage, mode, upload_s, download_s, compute_s, wall_s, seed_s)."""
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [len(stages) - 1, 1.4]})
    width = 0.8 / len(modes)
    for ax, group in ((axes[0], stages[:-1]), (axes[1], stages[-1:])):
        x = np.arange(len(group))
        for i, mode in enumerate(modes):
            get = {r["stage"]: r for r in rows if r["mode"] == mode}
            wall = [get[s]["wall_s"] for s in group]
            link = [get[s]["upload_s"] + get[s]["download_s"] for s in group]
            ax.bar(x + i * width, wall, width, color=MODE_COLOURS.get(mode), label=mode)
            ax.bar(x + i * width, link, width, color="none", edgecolor="black", hatch="//", linewidth=0)
            ax.scatter(x + i * width, [get[s]["seed_s"] for s in group], marker="_", s=200, color="black",
                       zorder=3, label="seed" if i == 0 and ax is axes[0] else None)
        ax.set_xticks(x + width * (len(modes) - 1) / 2, group)
        ax.set_ylabel("seconds (median)")
    axes[0].legend(title="mode (hatched: link)", fontsize=8)
    axes[0].set_title(f"{model}: wall time per module")
    axes[1].set_title("pipeline")
    return save_figure(fig, path)


def plot_optimiser(rows: list[dict], path: str | Path) -> Path:
    """All 16 placements: predicted wall time (bars), measured where run (dots)."""
    fig, ax = plt.subplots(figsize=(10, 3.8))
    x = np.arange(len(rows))
    ax.bar(x, [r["predicted_s"] for r in rows], color="#BBBBBB", label="predicted (cost model)")
    measured = [(i, r["measured_s"]) for i, r in enumerate(rows) if r["measured_s"] is not None]
    ax.scatter([i for i, _ in measured], [m for _, m in measured], color="black", zorder=3, label="measured")
    ax.set_xticks(x, [r["name"] if r["name"] != r["placement"] else r["placement"] for r in rows], rotation=60)
    ax.set_yscale("log")
    ax.set_ylabel("wall seconds")
    ax.set_xlabel("placement (Filter, Collect, Patch, Plot; L = local, R = remote), fastest predicted first")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def save_png(figure: bytes, path: str | Path) -> Path:
    """A figure the pipeline's Plot module rendered, as delivered to the workstation."""
    return write_atomic(path, figure)

"""Figures of claim 3 (matplotlib Agg, written to files, never shown).

Each function takes plain data (dicts and rows of numbers), a title and a path, and returns the path;
``repro.split.run`` decides what to draw and names the files ``<model>-split-<figure>.png``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from repro.files import save_figure  # noqa: E402
from repro.split.parts import BLOCKS, FINAL_NORM, LM_HEAD, POSITION_EMBEDDING, TOKEN_EMBEDDING  # noqa: E402

GROUP_COLOURS = {
    TOKEN_EMBEDDING: "tab:blue",
    POSITION_EMBEDDING: "tab:cyan",
    BLOCKS: "tab:gray",
    FINAL_NORM: "tab:olive",
    LM_HEAD: "tab:red",
}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def plot_component_bars(
    parts: dict[str, dict[str, float]], groups: dict[str, str], title: str, path: Path
) -> Path:
    """Stacked bars, one per part: ``parts[part][component] = ms`` (components stacked in order), total on top."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    labelled = set()
    for x, components in enumerate(parts.values()):
        base = 0.0
        for i, (name, ms) in enumerate(components.items()):
            group = groups[name]
            # Alternate shades so adjacent blocks stay distinguishable within one stack.
            colour = GROUP_COLOURS.get(group, "tab:purple")
            alpha = 0.55 + 0.45 * (i % 2) if group == BLOCKS else 1.0
            ax.bar(
                x,
                ms,
                bottom=base,
                color=colour,
                alpha=alpha,
                edgecolor="white",
                label=group if group not in labelled else None,
            )
            labelled.add(group)
            if ms > 0.06 * sum(components.values()):
                ax.text(x, base + ms / 2, f"{name}\n{ms:.2f}", ha="center", va="center", fontsize=7)
            base += ms
        ax.text(x, base, f"{base:.2f} ms", ha="center", va="bottom", fontweight="bold")
    ax.set_xticks(range(len(parts)), [p.capitalize() for p in parts])
    ax.set_ylabel("median time per call (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.margins(y=0.12)
    return _save(fig, path)


def plot_ratio_vs_seq_len(
    rows: list[dict], seed_ratio: float, threshold: float, title: str, path: Path
) -> Path:
    """Median Top/Bottom ratio (IQR band) against sequence length, one line per thread count."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for threads in sorted({r["threads"] for r in rows}):
        line = sorted((r for r in rows if r["threads"] == threads), key=lambda r: r["seq_len"])
        xs = [r["seq_len"] for r in line]
        ax.plot(xs, [r["ratio"] for r in line], marker="o", label=f"{threads} thread{'s' * (threads > 1)}")
        ax.fill_between(xs, [r["ratio_iqr"][0] for r in line], [r["ratio_iqr"][1] for r in line], alpha=0.2)
    ax.axhline(seed_ratio, color="tab:red", linestyle="--", label=f"seed ({seed_ratio:g}x at 6 tokens)")
    ax.axhline(threshold, color="black", linestyle=":", label=f"verdict threshold ({threshold:g}x)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequence length (tokens, batch 1)")
    ax.set_ylabel("Top / Bottom time (median of pairs)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_lm_head_roofline(rows: list[dict], title: str, path: Path) -> Path:
    """Measured LM-head time against the roofline's memory and compute ceilings, per sequence length."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    rows = sorted(rows, key=lambda r: r["seq_len"])
    xs = [r["seq_len"] for r in rows]
    ax.plot(xs, [r["measured_ms"] for r in rows], marker="o", color="tab:red", label="LM head, measured")
    ax.plot(
        xs,
        [r["memory_ms"] for r in rows],
        linestyle="--",
        color="tab:blue",
        label="bytes (weight + in/out) / read bandwidth",
    )
    ax.plot(
        xs,
        [r["compute_ms"] for r in rows],
        linestyle="--",
        color="tab:green",
        label="FLOPs / peak matmul FLOP/s",
    )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length (tokens, batch 1)")
    ax.set_ylabel("time per call (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)

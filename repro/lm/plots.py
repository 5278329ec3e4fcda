"""Claim 5's figures; each function takes plain data and a path and saves with ``repro.files.save_figure``."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from repro.files import save_figure
from repro.verdicts import Estimate

COLORS = {"rnn": "tab:red", "lstm": "tab:blue", "transformer": "tab:green"}
BASELINE_STYLES = {"unigram": ":", "kn_bigram": "--"}


def learning_curves(curves: dict[str, dict[int, list[tuple[int, float]]]], baselines: dict[str, float], budget: str,
                    path: Path) -> Path:
    """``curves[kind][seed]`` = (tokens seen, selection loss) per round; the baselines' selection loss as lines."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for kind, by_seed in curves.items():
        for i, points in enumerate(by_seed.values()):
            ax.plot(*zip(*points), "o-", color=COLORS[kind], alpha=0.8, label=kind if i == 0 else None)
    for name, loss in baselines.items():
        ax.axhline(loss, color="gray", linestyle=BASELINE_STYLES.get(name, "-"), label=f"{name} ({math.exp(loss):.0f})")
    ax.set(xlabel="training tokens seen", ylabel="selection-slice loss (nats/word)",
           title=textwrap.fill(f"PTB learning curves, one line per seed; {budget}", 100))
    ax.title.set_fontsize(7)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def perplexity_bars(table: dict[str, dict[str, float]], budget: str, path: Path) -> Path:
    """Perplexity per evaluation set (groups) and model or baseline (bars)."""
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(next(iter(table.values())))
    colors = [COLORS.get(n.lower(), "lightgray" if "unigram" in n else "darkgray") for n in names]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    x, width = np.arange(len(table)), 0.8 / len(names)
    for i, (name, color) in enumerate(zip(names, colors)):
        bars = ax.bar(x + (i - (len(names) - 1) / 2) * width, [v[name] for v in table.values()], width, color=color, label=name)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(x, list(table), fontsize=8)
    ax.set(ylabel="perplexity (lower is better)",
           title=textwrap.fill(f"Models (geometric mean over seeds) and baselines; {budget}", 120))
    ax.title.set_fontsize(7)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def finetune_summary(losses: list[float], factors: dict[str, Estimate], budget: str, path: Path) -> Path:
    """Training loss per step (left); perplexity factor before ÷ after per token kind with 95% intervals (right)."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(range(1, len(losses) + 1), losses, ".-", alpha=0.7)
    left.set(xlabel="step", ylabel="train loss (nats/token)", title="training loss per step")
    names = list(factors)
    values = [factors[n].value for n in names]
    errors = [[v - factors[n].interval.low for n, v in zip(names, values)],
              [factors[n].interval.high - v for n, v in zip(names, values)]]
    right.barh(names, values, xerr=errors, color=["gray", "tab:orange", "tab:blue", "tab:green"][: len(names)], capsize=3)
    right.axvline(1.0, color="black", linewidth=0.8)
    right.axvline(2.0, color="gray", linestyle="--", linewidth=0.8, label="2x: smallest effect of interest")
    right.axvline(3.2, color="gray", linestyle=":", linewidth=0.8, label="3.2x: the seed (all tokens)")
    right.set_xscale("log")
    right.set(xlabel="perplexity before ÷ after (95% CI, log scale)", title="held-out PubMedQA and the WikiText-2 control")
    right.legend(fontsize=7)
    fig.suptitle(textwrap.fill(f"PubMedQA fine-tuning; {budget}", 140), fontsize=8)
    return save_figure(fig, path)

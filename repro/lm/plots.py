"""Claim 5's figures; each function takes plain data and a path and saves with ``repro.files.save_figure``."""

from __future__ import annotations

from pathlib import Path

from repro.files import save_figure

COLORS = {"rnn": "tab:red", "lstm": "tab:blue", "transformer": "tab:green"}


def learning_curves(curves: dict[str, dict[str, list[dict]]], budget: str, path: Path) -> Path:
    """``curves[corpus][kind]`` = per-epoch metrics: train (dashed) and validation (solid) loss per epoch."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 3.6), squeeze=False)
    for ax, (corpus, by_kind) in zip(axes[0], curves.items()):
        for kind, epochs in by_kind.items():
            x = [e["epoch"] for e in epochs]
            ax.plot(x, [e["train_loss"] for e in epochs], "--", color=COLORS[kind], alpha=0.7)
            ax.plot(x, [e["val_loss"] for e in epochs], "o-", color=COLORS[kind], label=kind)
        ax.set(title=f"{corpus} (dashed: train, solid: validation)", xlabel="epoch", ylabel="loss (nats/word)")
        ax.legend()
    fig.suptitle(f"Learning curves; {budget}", fontsize=9)
    return save_figure(fig, path)


def batch_losses(curves: dict[str, dict[str, list[tuple[int, float]]]], every: int, path: Path) -> Path:
    """Training loss averaged over every ``every`` batches, per corpus and model."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 3.4), squeeze=False)
    for ax, (corpus, by_kind) in zip(axes[0], curves.items()):
        for kind, points in by_kind.items():
            if points:
                ax.plot(*zip(*points), ".-", color=COLORS[kind], label=kind)
        ax.set(title=f"{corpus}: train loss, mean of {every} batches", xlabel="batch", ylabel="loss")
        ax.legend()
    return save_figure(fig, path)


def perplexity_bars(settings: dict[str, dict[str, float]], published: dict[str, float], budget: str, path: Path) -> Path:
    """Validation perplexity per setting (groups) and model (bars), the seed's WikiText-2 numbers beside them."""
    import matplotlib.pyplot as plt
    import numpy as np

    groups = [*settings, "seed 004\n(WikiText-2)"]
    values = [*settings.values(), published]
    kinds = list(COLORS)
    fig, ax = plt.subplots(figsize=(8, 3.8))
    x = np.arange(len(groups))
    for i, kind in enumerate(kinds):
        heights = [v.get(kind, np.nan) for v in values]
        bars = ax.bar(x + (i - 1) * 0.27, heights, 0.27, color=COLORS[kind], label=kind)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(x, groups, fontsize=8)
    ax.set(ylabel="validation perplexity", title=f"Lower is better; {budget}")
    ax.title.set_fontsize(8)
    ax.legend()
    return save_figure(fig, path)


def finetune_curve(losses: list[float], evals: list[tuple[int, float]], budget: str, path: Path) -> Path:
    """Training loss per step and held-out loss at each evaluation."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(range(1, len(losses) + 1), losses, ".-", label="train (per step)", alpha=0.7)
    ax.plot(*zip(*evals), "o-", label="held-out (test ids)")
    ax.set(xlabel="step", ylabel="loss (nats/token)", title=f"PubMedQA fine-tuning; {budget}")
    ax.title.set_fontsize(8)
    ax.legend()
    return save_figure(fig, path)

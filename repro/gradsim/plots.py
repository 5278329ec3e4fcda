"""Figures of claim 2: each function takes the result (plain arrays inside) and a path, and saves with
``repro.files.save_figure``; ``all_figures`` writes each once."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from repro.files import save_figure  # noqa: E402
from repro.intervals import row_spearman  # noqa: E402

FIGURES = ("coupling_heatmap", "comprehensive_analysis")


def all_figures(result, paths: dict[str, Path]) -> dict[str, Path]:
    """{figure name: path written}, each figure drawn once."""
    return {"coupling_heatmap": coupling_heatmap(result, paths["coupling_heatmap"]),
            "comprehensive_analysis": comprehensive_analysis(result, paths["comprehensive_analysis"])}


def coupling_heatmap(result, path: Path) -> Path:
    """The N x N GradSim matrix, pieces grouped by relation template (HotpotQA last), so a checkerboard by
    template is visible as such."""
    order = sorted(range(len(result.pieces)), key=lambda i: (result.pieces[i].relation or "~", i))
    g = result.gradsim[np.ix_(order, order)]
    fig, ax = plt.subplots(figsize=(8, 7))
    image = ax.imshow(g, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="GradSim (cosine of gradients)")
    labels = [result.pieces[i].relation or "HotpotQA" for i in order]
    starts = [k for k in range(len(labels)) if k == 0 or labels[k] != labels[k - 1]]
    for k in starts[1:]:
        ax.axhline(k - 0.5, color="k", lw=0.5)
        ax.axvline(k - 0.5, color="k", lw=0.5)
    ax.set_yticks(starts, [labels[k] for k in starts], fontsize=6)
    ax.set_xticks([])
    ax.set_title(f"{Path(result.model).name}: GradSim at layer {result.gradsim_layer}, pieces by template", fontsize=9)
    return save_figure(fig, path)


def _table(result):
    """(x = GradSim, y = |dlogP|, f = |first-order|, valid) [E, N] over the valid edits and fact columns."""
    valid = [o for o in result.outcomes if o.valid]
    facts = np.array([p.source == "facts" for p in result.pieces])
    if not valid:
        return (np.zeros((0, int(facts.sum()))),) * 3 + (np.zeros((0, int(facts.sum())), bool),)
    rows = np.array([o.piece for o in valid])
    x = result.gradsim[rows][:, facts]
    y = np.abs(np.array([o.delta_logp for o in valid]))[:, facts]
    f = np.abs(np.array([o.first_order for o in valid]))[:, facts]
    answers = np.array([p.answer.strip().lower() for p in result.pieces])[facts]
    ok = (np.arange(len(result.pieces))[facts][None] != rows[:, None]) & (
        answers[None] != np.array([o.target_new.strip().lower() for o in valid])[:, None])
    return x, y, f, ok


def comprehensive_analysis(result, path: Path) -> Path:
    """Six panels: GradSim distribution, ripple vs GradSim, per-edit rho, the positive control, efficacy
    per edit, and rho within each template."""
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    n = len(result.pieces)
    ax = axes[0, 0]
    ax.hist(result.gradsim[~np.eye(n, dtype=bool)], bins=40, color="0.4")
    ax.set(title="(a) GradSim, all pairs i != j", xlabel="GradSim", ylabel="pairs")

    x, y, f, ok = _table(result)
    ax = axes[0, 1]
    if ok.any():
        ax.scatter(x[ok], y[ok], s=4, alpha=0.4, color="tab:blue")
        ax.set_yscale("symlog", linthresh=0.01)
    est = result.stats.get("gradsim")
    title = f"rho {est.value:.3f} [{est.interval.low:.3f}, {est.interval.high:.3f}]" if est else "no valid edits"
    ax.set(title=f"(b) ripple vs GradSim: {title}", xlabel="GradSim(edited i, other j)", ylabel="|Δ log P(a_j|q_j)|")

    ax = axes[0, 2]
    if ok.any():
        rho = row_spearman(x, y, ok)
        ax.hist(rho[np.isfinite(rho)], bins=15, color="0.6")
        if est:
            ax.axvline(est.value, color="k")
            ax.axvspan(est.interval.low, est.interval.high, color="tab:blue", alpha=0.2)
    ax.axvline(0.3, color="tab:red", ls="--", lw=0.8)
    ax.set(title="(c) per-edit Spearman rho (mean, 95% two-way CI; 0.3 dashed)", xlabel="rho", ylabel="edits")

    ax = axes[1, 0]
    if ok.any():
        ax.scatter(f[ok], y[ok], s=4, alpha=0.4, color="tab:green")
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_yscale("symlog", linthresh=0.01)
    control = result.stats.get("first_order")
    ax.set(title=f"(d) positive control: rho {control.value:.3f}" if control else "(d) positive control",
           xlabel="|first-order prediction| sum <grad log P, ΔW>", ylabel="|Δ log P| measured")

    ax = axes[1, 1]
    o = result.outcomes
    k = np.arange(len(o))
    ax.bar(k - 0.2, [e.new_logp_after - e.old_logp_after for e in o], width=0.4,
           color=["tab:green" if e.valid else "tab:red" for e in o], label="log P(new) - log P(old), after")
    ax.scatter(k[[e.new_top1_after for e in o]], np.zeros(sum(e.new_top1_after for e in o)), marker="^", color="k",
               s=12, label="new target top-1")
    ax.axhline(0, color="k", lw=0.8)
    ax.legend(fontsize=7)
    ax.set(title=f"(e) efficacy: {sum(e.valid for e in o)}/{len(o)} valid", xlabel="edit", ylabel="nats")

    ax = axes[1, 2]
    rows = result.stats.get("within_template", [])
    if rows:
        names = [r["template"] for r in rows]
        ax.barh(names, [r["mean rho"] for r in rows], color="0.6", label="GradSim")
        ax.scatter([r["first-order rho"] for r in rows], names, color="tab:green", s=12, label="first-order")
        ax.legend(fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    ax.axvline(0, color="k", lw=0.8)
    ax.set(title="(f) mean per-edit rho within each template", xlabel="rho")
    fig.suptitle(f"{Path(result.model).name}: GradSim vs ripple of MEMIT edits — {result.ruling.verdict.value}")
    fig.tight_layout()
    return save_figure(fig, path)

"""Figures of claim 2: each function takes the result (plain arrays inside) and a path, and saves with
``repro.files.save_figure``."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from repro.files import save_figure  # noqa: E402

SOURCE_COLOURS = {"hotpotqa": "tab:blue", "facts": "tab:orange"}


def coupling_heatmap(result, path: Path) -> Path:
    """The N x N GradSim matrix, pieces ordered by source then chain (chains are adjacent rows)."""
    n = len(result.pieces)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    image = ax.imshow(result.gradsim, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="GradSim (cosine of gradients)")
    split = sum(p.source == "hotpotqa" for p in result.pieces)
    if 0 < split < n:
        for line in (ax.axhline, ax.axvline):
            line(split - 0.5, color="k", lw=0.8)
    ax.set_title(f"{Path(result.model).name}: GradSim at layer {result.gradsim_layer} "
                 f"(HotpotQA 0-{split - 1}, known facts {split}-{n - 1})", fontsize=9)
    ax.set_xlabel("piece j")
    ax.set_ylabel("piece i")
    return save_figure(fig, path)


def _pairs(result):
    """(gradsim, |ripple|, same_chain, source of the edit) over all (valid edit, other piece) pairs."""
    xs, ys, chain, src = [], [], [], []
    for o in result.outcomes:
        if not o.valid:
            continue
        others = np.arange(len(result.pieces)) != o.piece
        xs.append(result.gradsim[o.piece, others])
        ys.append(np.abs(o.delta_logp[others]))
        chain.append(result.relations["same_chain"][o.piece, others])
        src += [result.pieces[o.piece].source] * int(others.sum())
    if not xs:
        return np.zeros(0), np.zeros(0), np.zeros(0, bool), []
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(chain), src


def comprehensive_analysis(result, path: Path) -> Path:
    """Six panels: GradSim distribution, GradSim vs ripple, ripple by GradSim bin, efficacy per edit,
    same vs cross chain, and the correlation with its CI per piece source."""
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    n = len(result.pieces)
    off = result.gradsim[~np.eye(n, dtype=bool)]
    ax = axes[0, 0]
    ax.hist(off, bins=40, color="0.4")
    ax.set(title="(a) GradSim, all pairs i != j", xlabel="GradSim", ylabel="pairs")

    x, y, chain, src = _pairs(result)
    ax = axes[0, 1]
    if len(x):
        colours = [SOURCE_COLOURS.get(s, "k") for s in src]
        ax.scatter(x, y, s=6, c=colours, alpha=0.5)
        ax.set_yscale("symlog", linthresh=0.01)
    pooled = result.correlations["pooled"]
    ax.set(title=f"(b) ripple vs GradSim: Spearman {pooled['spearman']:.3f}, p {pooled['permutation_p']:.3g}",
           xlabel="GradSim(edited i, other j)", ylabel="|Δ log P(a_j|q_j)|")

    ax = axes[0, 2]
    if len(x) >= 5:
        edges = np.quantile(x, np.linspace(0, 1, 6))
        which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, 4)
        ax.boxplot([y[which == b] for b in range(5)], showfliers=False)
        ax.set_xticks(range(1, 6), [f"Q{b + 1}" for b in range(5)])
    ax.set(title="(c) ripple by GradSim quintile", xlabel="GradSim quintile (low -> high)", ylabel="|Δ log P|")

    ax = axes[1, 0]
    gains = [o.new_logp_after - o.new_logp_before for o in result.outcomes]
    ax.bar(range(len(gains)), gains, color=["tab:green" if o.valid else "tab:red" for o in result.outcomes])
    ax.set(title=f"(d) efficacy: {sum(o.valid for o in result.outcomes)}/{len(result.outcomes)} edits valid",
           xlabel="edit", ylabel="rise of log P(new target)")

    ax = axes[1, 1]
    if len(x):
        groups = [y[chain], y[~chain]]
        ax.boxplot([g if len(g) else [np.nan] for g in groups], showfliers=False)
        ax.set_xticks([1, 2], [f"same chain ({chain.sum()})", f"cross chain ({(~chain).sum()})"])
    ax.set(title="(e) ripple within vs across 2-hop chains", ylabel="|Δ log P|")

    ax = axes[1, 2]
    names = list(result.correlations)
    rho = [result.correlations[k]["spearman"] for k in names]
    low = [result.correlations[k]["ci_low"] for k in names]
    high = [result.correlations[k]["ci_high"] for k in names]
    err = np.array([[r - lo if np.isfinite(lo) else 0 for r, lo in zip(rho, low)],
                    [hi - r if np.isfinite(hi) else 0 for r, hi in zip(rho, high)]])
    ax.bar(names, np.nan_to_num(rho), yerr=np.nan_to_num(err), capsize=4, color="0.6")
    ax.axhline(0, color="k", lw=0.8)
    ax.set(title="(f) Spearman rho with cluster-bootstrap 95% CI", ylabel="rho")
    fig.suptitle(f"{Path(result.model).name}: GradSim vs ripple of MEMIT edits — {result.verdict.verdict}")
    fig.tight_layout()
    return save_figure(fig, path)

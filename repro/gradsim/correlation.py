"""Does GradSim(i, j) predict the ripple |Delta log P(a_j | q_j)| of editing piece i? (seed 001, stage 3)

Observations are pairs (edit i, other piece j), grouped by edit: pairs of one edit share its delta, so
they are not independent. Hence

- the p-value permutes the ripple values *within each edit* (the null: inside an edit, which piece
  ripples is unrelated to its GradSim with the edited piece), one-sided for rho > 0;
- the 95% CI resamples whole edits with replacement (a cluster bootstrap, ``scipy.stats.bootstrap`` over
  edit indices, percentile method);
- the partial correlation removes what shared surface (same subject, same relation template) explains:
  both variables are rank-transformed and regressed on those indicators, and the residuals correlated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass
class PairTable:
    """One row per (valid edit, other piece)."""

    edit: np.ndarray  # [pairs] index of the edit (cluster id, 0..n_edits-1)
    gradsim: np.ndarray  # [pairs]
    ripple: np.ndarray  # [pairs] |Delta log P|
    covariates: dict[str, np.ndarray]  # name -> [pairs] bool (same_chain, same_subject, same_template, ...)

    @property
    def n_edits(self) -> int:
        return len(np.unique(self.edit))

    def select(self, mask: np.ndarray) -> PairTable:
        return PairTable(self.edit[mask], self.gradsim[mask], self.ripple[mask],
                         {k: v[mask] for k, v in self.covariates.items()})


def pair_table(gradsim: np.ndarray, ripple_rows: dict[int, np.ndarray], relations: dict[str, np.ndarray],
               columns: np.ndarray | None = None) -> PairTable:
    """Rows for every edited piece i (key of ``ripple_rows``: its |Delta log P| over all pieces [N]) and
    every other piece j (restricted to ``columns`` [N] bool, if given)."""
    edits, sims, ripples, covs = [], [], [], {k: [] for k in relations}
    for cluster, (i, row) in enumerate(sorted(ripple_rows.items())):
        others = np.arange(len(row)) != i
        if columns is not None:
            others &= columns
        edits.append(np.full(others.sum(), cluster))
        sims.append(gradsim[i, others])
        ripples.append(row[others])
        for k, rel in relations.items():
            covs[k].append(rel[i, others])
    cat = np.concatenate
    if not edits:
        return PairTable(np.zeros(0, int), np.zeros(0), np.zeros(0), {k: np.zeros(0, bool) for k in relations})
    return PairTable(cat(edits), cat(sims), cat(ripples), {k: cat(v) for k, v in covs.items()})


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def within_edit_permutation_p(table: PairTable, n_permutations: int, seed: int) -> float:
    """One-sided p for Spearman rho > 0, permuting ripple within each edit: (1 + #{rho* >= rho}) / (1 + n)."""
    if len(table.edit) < 3:
        return float("nan")
    x = stats.rankdata(table.gradsim)
    y = stats.rankdata(table.ripple)  # pooled ranks: a permutation within edits keeps each edit's multiset
    x = (x - x.mean()) / np.linalg.norm(x - x.mean())
    y = y - y.mean()
    observed = float(x @ y / np.linalg.norm(y))
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(table.edit == e) for e in np.unique(table.edit)]
    exceed = 0
    for _ in range(n_permutations):
        shuffled = np.empty_like(y)
        for g in groups:
            shuffled[g] = y[rng.permutation(g)]
        exceed += x @ shuffled / np.linalg.norm(shuffled) >= observed - 1e-12
    return (1 + exceed) / (1 + n_permutations)


def cluster_bootstrap_ci(table: PairTable, n_resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile CI of the pooled Spearman rho, resampling edits with replacement."""
    edits = np.unique(table.edit)
    if len(edits) < 2:
        return float("nan"), float("nan")
    rows = {e: np.flatnonzero(table.edit == e) for e in edits}

    def rho(sample):
        index = np.concatenate([rows[e] for e in sample.astype(int)])
        return _spearman(table.gradsim[index], table.ripple[index])

    result = stats.bootstrap((edits,), rho, n_resamples=n_resamples, method="percentile", vectorized=False,
                             confidence_level=0.95, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def partial_spearman(table: PairTable, controls: list[str]) -> float:
    """Spearman rho of GradSim and ripple after regressing both (ranks) on the ``controls`` indicators."""
    if len(table.edit) < 3:
        return float("nan")
    design = np.column_stack([np.ones(len(table.edit))] + [table.covariates[c].astype(float) for c in controls])

    def residual(v):
        ranks = stats.rankdata(v)
        coef, *_ = np.linalg.lstsq(design, ranks, rcond=None)
        return ranks - design @ coef

    rx, ry = residual(table.gradsim), residual(table.ripple)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return float("nan")
    return float(stats.pearsonr(rx, ry).statistic)


def correlation_summary(table: PairTable, n_permutations: int, n_bootstrap: int, seed: int) -> dict:
    """Everything the verdict and the report need about one set of pairs."""
    n = len(table.edit)
    out = {
        "edits": table.n_edits,
        "pairs": n,
        "spearman": _spearman(table.gradsim, table.ripple),
        "pearson": float(stats.pearsonr(table.gradsim, table.ripple).statistic) if n >= 3 and np.ptp(table.gradsim) > 0 and np.ptp(table.ripple) > 0 else float("nan"),
        "permutation_p": within_edit_permutation_p(table, n_permutations, seed),
        "n_permutations": n_permutations,
    }
    out["ci_low"], out["ci_high"] = cluster_bootstrap_ci(table, n_bootstrap, seed)
    surface = [c for c in ("same_subject", "same_template") if c in table.covariates]
    out["partial_spearman"] = partial_spearman(table, surface)
    out["partial_controls"] = surface
    for name in ("same_chain",):
        if name in table.covariates:
            same = table.covariates[name]
            out[f"{name}_pairs"] = int(same.sum())
            out[f"{name}_mean_gradsim"] = float(table.gradsim[same].mean()) if same.any() else float("nan")
            out[f"{name}_mean_ripple"] = float(table.ripple[same].mean()) if same.any() else float("nan")
            out[f"cross_{name[5:]}_mean_gradsim"] = float(table.gradsim[~same].mean()) if (~same).any() else float("nan")
            out[f"cross_{name[5:]}_mean_ripple"] = float(table.ripple[~same].mean()) if (~same).any() else float("nan")
            out[f"cross_{name[5:]}_spearman"] = _spearman(table.gradsim[~same], table.ripple[~same])
    return out

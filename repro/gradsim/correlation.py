"""Does GradSim(i, j) predict the ripple |Delta log P(a_j | q_j)| of editing piece i? (seed 001, stage 3)

The data are a table: one row per valid edit, one column per knowledge piece. Every edit is measured on
the same pieces, so both are samples: a piece that ripples under every edit, or has high GradSim with
every piece, is shared by all rows. Hence (``repro.intervals``; calibrated in ``tests/test_intervals.py``):

- the statistic is the mean over edits of the per-edit Spearman rho between GradSim(i, j) and ripple over
  the pieces j (each edit's rho is free of that edit's overall size);
- its p-value permutes piece labels of the ripple *jointly across edits* (within-edit permutation rejects
  10-12% at a nominal 5% when pieces carry effects of their own);
- its 95% interval resamples edits and pieces, independently (a two-way bootstrap);
- a pair (i, j) is left out when j is i itself or when j's answer is i's new target (an edit to " Finnish"
  makes every " Finnish" likelier; that is the target, not a ripple), and every pair left out is counted.

The positive control is the same statistic with the first-order prediction |sum_layers <grad_W log
P(a_j|q_j), Delta W_i>| in place of GradSim: it must track the ripple if the ripple is measured at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from repro.intervals import column_permutation_p, row_spearman, two_way_bootstrap_estimate
from repro.verdicts import Estimate


@dataclass
class EditTable:
    """One row per valid edit, one column per analysed piece."""

    edited: np.ndarray  # [E] column of the edited piece
    gradsim: np.ndarray  # [E, N] GradSim(edited piece, j)
    ripple: np.ndarray  # [E, N] |Delta log P(a_j | q_j)|
    predicted: np.ndarray  # [E, N] |first-order prediction of Delta log P(a_j | q_j)|
    valid: np.ndarray  # [E, N] pairs that enter the statistic
    exclusions: dict[str, int] = field(default_factory=dict)  # reason -> pairs left out

    @property
    def n_edits(self) -> int:
        return len(self.edited)

    @property
    def n_pieces(self) -> int:
        return self.gradsim.shape[1]

    def columns(self, keep: np.ndarray) -> EditTable:
        """The same edits over the columns ``keep`` [N] bool (rows whose edited piece is dropped keep it
        out of the columns only)."""
        return EditTable(self.edited, self.gradsim[:, keep], self.ripple[:, keep], self.predicted[:, keep],
                         self.valid[:, keep], dict(self.exclusions))


def edit_table(gradsim: np.ndarray, edited: list[int], ripple: np.ndarray, predicted: np.ndarray,
               answers: list[str], targets: list[str]) -> EditTable:
    """The table of ``len(edited)`` valid edits over all N pieces, with the pairs left out and why."""
    rows = np.asarray(edited, dtype=int)
    self_pair = np.arange(gradsim.shape[0])[None] == rows[:, None]
    norm = [a.strip().lower() for a in answers]
    is_target = np.array([[a == t.strip().lower() for a in norm] for t in targets]).reshape(self_pair.shape)
    valid = ~self_pair & ~is_target
    exclusions = {"the edited piece itself": int(self_pair.sum()),
                  "piece's answer is the edit's new target": int((is_target & ~self_pair).sum())}
    return EditTable(rows, gradsim[rows], np.abs(ripple), np.abs(predicted), valid, exclusions)


def mean_rho(x: np.ndarray, y: np.ndarray, valid: np.ndarray) -> float:
    """The mean over rows of the per-row Spearman rho (rows without a defined rho left out)."""
    rho = row_spearman(x, y, valid)
    return float(np.nanmean(rho)) if np.isfinite(rho).any() else float("nan")


def _table_statistic(x, y, valid):
    def statistic(rows, cols):
        at = (rows[:, :, None], cols[:, None, :])  # [B, E, 1], [B, 1, N] -> [B, E, N]
        rho = row_spearman(x[at], y[at], valid[at])
        with np.errstate(all="ignore"):
            return np.nanmean(rho, axis=-1)
    return statistic


def rho_estimate(x: np.ndarray, y: np.ndarray, valid: np.ndarray, n_resamples: int, seed: int) -> Estimate:
    """Mean per-edit Spearman rho with its two-way (edits x pieces) bootstrap interval; n = edits."""
    return two_way_bootstrap_estimate(x.shape[0], x.shape[1], _table_statistic(x, y, valid), units="edits",
                                      col_units="pieces", n_resamples=n_resamples, seed=seed)


def joint_permutation_p(x: np.ndarray, y: np.ndarray, valid: np.ndarray, n_permutations: int, seed: int) -> float:
    """One-sided p for mean rho > 0, permuting the ripple's piece labels jointly across edits (a pair
    enters when it is valid both before and after the permutation)."""
    def statistic(perms):
        yp = y[:, perms].transpose(1, 0, 2)  # [B, E, N]
        ok = valid[None] & valid[:, perms].transpose(1, 0, 2)
        with np.errstate(all="ignore"):
            return np.nanmean(row_spearman(np.broadcast_to(x, yp.shape), yp, ok), axis=-1)
    return column_permutation_p(x.shape[1], statistic, n_permutations=n_permutations, seed=seed)


def partial_spearman(x: np.ndarray, y: np.ndarray, controls: list[np.ndarray]) -> float:
    """Spearman rho of pooled pairs after regressing both ranks on the ``controls`` indicators
    (descriptive: is GradSim more than shared subject or template?)."""
    if len(x) < 3:
        return float("nan")
    design = np.column_stack([np.ones(len(x))] + [c.astype(float) for c in controls])

    def residual(v):
        ranks = stats.rankdata(v)
        coef, *_ = np.linalg.lstsq(design, ranks, rcond=None)
        return ranks - design @ coef

    rx, ry = residual(x), residual(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return float("nan")
    return float(stats.pearsonr(rx, ry).statistic)


def pair_classes(table: EditTable, relations: dict[str, np.ndarray]) -> list[dict]:
    """Pairs by what edited piece i and piece j share: GradSim and ripple apart from the template."""
    rel = {k: v[table.edited] for k, v in relations.items()}  # [E, N]
    classes = {
        "same template, other subject": rel["same_template"] & ~rel["same_subject"],
        "same subject, other template": rel["same_subject"] & ~rel["same_template"],
        "linked (2-hop chain)": rel["linked"],
        "nothing shared": ~rel["same_template"] & ~rel["same_subject"] & ~rel["linked"],
    }
    out = []
    for name, mask in classes.items():
        mask = mask & table.valid
        out.append({"pairs": name, "n": int(mask.sum()),
                    "mean GradSim": float(table.gradsim[mask].mean()) if mask.any() else float("nan"),
                    "mean |dlogP|": float(table.ripple[mask].mean()) if mask.any() else float("nan")})
    return out


def summarize(table: EditTable, relations: dict[str, np.ndarray], templates: list[str | None],
              n_resamples: int, n_permutations: int, seed: int) -> dict:
    """Everything the verdict and the report need: the primary estimate and p, the positive control,
    rho within each template and across templates, pair classes, the partial correlation, exclusions."""
    x, y, f, ok = table.gradsim, table.ripple, table.predicted, table.valid
    out: dict = {"edits": table.n_edits, "pieces": table.n_pieces, "pairs": int(ok.sum()), "exclusions": table.exclusions}
    out["gradsim"] = rho_estimate(x, y, ok, n_resamples, seed)
    out["permutation_p"] = joint_permutation_p(x, y, ok, n_permutations, seed)
    out["first_order"] = rho_estimate(f, y, ok, n_resamples, seed)
    out["gradsim_vs_first_order"] = mean_rho(x, f, ok)
    template = np.array(templates, dtype=object)
    same = template[table.edited][:, None] == template[None]  # [E, N]
    out["across_templates"] = rho_estimate(x, y, ok & ~same, n_resamples, seed)
    out["within_template"] = []
    for name in sorted({t for t in templates if t is not None}):
        cols = template == name
        if cols.sum() >= 4:
            sub = table.columns(cols)
            rho = row_spearman(sub.gradsim, sub.ripple, sub.valid)
            out["within_template"].append({
                "template": name, "pieces": int(cols.sum()), "edits": int(np.isfinite(rho).sum()),
                "mean rho": float(np.nanmean(rho)) if np.isfinite(rho).any() else float("nan"),
                "first-order rho": mean_rho(sub.predicted, sub.ripple, sub.valid)})
    out["pair_classes"] = pair_classes(table, relations)
    rel = {k: v[table.edited][ok] for k, v in relations.items()}
    out["partial_spearman"] = partial_spearman(x[ok], y[ok], [rel["same_subject"], rel["same_template"]])
    out["pooled_spearman"] = float(stats.spearmanr(x[ok], y[ok]).statistic) if ok.sum() >= 3 else float("nan")
    return out

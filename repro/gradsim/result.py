"""The result of claim 2 on one model: pieces, GradSim, edits, ripple, statistics and the ruling."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from repro.gradsim.pieces import FACTS, HOTPOT, KnowledgePiece
from repro.gradsim.ripple import EditOutcome
from repro.gradsim.verdict import PUBLISHED
from repro.intervals import row_spearman
from repro.snapshots import rounded
from repro.verdicts import Estimate, KeyNumber, Measurement, Ruling

FAMILY_NAMES = {"gpt2": "GPT-2", "llama": "LLaMA"}
RIPPLE_VS_QIN = (
    "Ripple here is |Delta log P(a_j|q_j)| of every other known fact j after editing fact i, a continuous "
    "change in the model's belief whatever the facts' logical relation; Qin et al. measure ripple as "
    "accuracy on questions logically entailed by the edited fact (would a consistent reasoner update them?), "
    "a pass/fail over related questions. Ours includes unrelated facts and measures side effects as well as "
    "intended ripple, so a strong r for theirs need not mean a strong rho for ours.")


def hotpot_descriptive(pieces: list[KnowledgePiece], gradsim: np.ndarray, valid: list[EditOutcome]) -> dict:
    """HotpotQA pieces that passed the knowledge check, under the fact edits: outside the statistic."""
    hot = np.array([p.source == HOTPOT for p in pieces])
    facts = np.array([p.source == FACTS for p in pieces])
    out = {"known pieces": int(hot.sum()),
           "why descriptive": "few HotpotQA cloze pieces pass the knowledge check for a small model, and their "
                              "answers have no type for a same-kind counterfactual, so they are not edited and "
                              "stay outside the statistic"}
    if hot.any() and valid:
        rows = np.array([o.piece for o in valid])
        ripple = np.abs(np.array([o.delta_logp for o in valid]))
        out["mean |dlogP| (HotpotQA / facts)"] = [float(ripple[:, hot].mean()), float(ripple[:, facts].mean())]
        out["mean GradSim with the edited fact (HotpotQA / facts)"] = [float(gradsim[rows][:, hot].mean()),
                                                                        float(gradsim[rows][:, facts].mean())]
        if hot.sum() >= 4:
            rho = row_spearman(gradsim[rows][:, hot], ripple[:, hot])
            out["mean per-edit rho over HotpotQA pieces"] = float(np.nanmean(rho))
    return out


@dataclass
class GradSimResult:
    model: str
    family: str  # adapter family: "gpt2" | "llama"
    n_layers: int
    d_mlp: int
    edit_layers: list[int]
    gradsim_layer: int
    settings: dict
    hparams: dict
    covariance: dict  # provenance of C: corpus, articles, tokens, seed, cache files, build seconds
    contexts: list[list[str]]
    sources: dict[str, dict]  # source -> {read, pieces, dropped: {reason: count}}
    pieces: list[KnowledgePiece]  # known facts first, then known HotpotQA pieces
    gradsim: np.ndarray  # [N, N]
    relations: dict[str, np.ndarray]  # name -> [N, N] bool
    outcomes: list[EditOutcome]
    plan_skipped: dict[str, int]
    stats: dict  # correlation.summarize over the valid edits (Estimates where judged)
    hotpot: dict
    em: dict[str, int]
    ruling: Ruling
    seconds: dict[str, float]
    figures: dict[str, Path] = field(default_factory=dict)

    @property
    def model_type(self) -> str:
        return FAMILY_NAMES.get(self.family, self.family)

    # ---- derived numbers ----
    def gradsim_stats(self) -> dict:
        off = ~np.eye(len(self.pieces), dtype=bool)
        values = self.gradsim[off]
        return {
            "pieces": len(self.pieces),
            "mean": float(values.mean()) if values.size else float("nan"),
            "std": float(values.std()) if values.size else float("nan"),
            "min": float(values.min()) if values.size else float("nan"),
            "max": float(values.max()) if values.size else float("nan"),
            "same_template_mean": _masked_mean(self.gradsim, self.relations["same_template"] & off),
            "same_subject_mean": _masked_mean(self.gradsim, self.relations["same_subject"] & off),
            "linked_mean": _masked_mean(self.gradsim, self.relations["linked"] & off),
        }

    def efficacy(self) -> dict:
        o = self.outcomes
        valid = [e for e in o if e.valid]
        paraphrase = [e.paraphrase_success for e in valid if e.paraphrase_success is not None]
        last = self.edit_layers[-1]
        return {
            "attempted": len(o),
            "valid": len(valid),
            "invalid": len(o) - len(valid),
            "new_target_top1": sum(e.new_top1_after for e in o),
            "mean_logp_new_before": _mean([e.new_logp_before for e in o]),
            "mean_logp_new_after": _mean([e.new_logp_after for e in o]),
            "mean_logp_old_before": _mean([e.old_logp_before for e in o]),
            "mean_logp_old_after": _mean([e.old_logp_after for e in o]),
            "paraphrase_success": _mean(paraphrase),
            "control_abs_delta": _mean([e.control_abs_delta for e in valid]),
            "written_share_last_layer": _mean([e.written[last] for e in o]),
            "z_steps_mean": _mean([e.z_steps for e in o]),
        }

    def snapshot(self) -> dict:
        """Counts exactly; GradSim statistics to 3 decimals; efficacy and correlations to 2 (edits run 20
        Adam steps, whose float noise between thread counts must not flip a stored digit)."""
        eff = self.efficacy()
        rho, control = self.stats.get("gradsim"), self.stats.get("first_order")
        return {
            "model": self.model,
            "model_type": self.model_type,
            "edit_layers": self.edit_layers,
            "gradsim_layer": self.gradsim_layer,
            "lambda": self.hparams["mom2_update_weight"],
            "covariance": {k: self.covariance[k] for k in ("tokens", "articles", "seq_len", "seed", "sampling")},
            "pieces": {s: {k: v for k, v in r.items()} for s, r in sorted(self.sources.items())},
            "gradsim": rounded(self.gradsim_stats(), 3),
            "efficacy": {"attempted": eff["attempted"], "valid": eff["valid"], "new_target_top1": eff["new_target_top1"],
                         "mean_logp_new_after": rounded(eff["mean_logp_new_after"], 1)},
            "exclusions": self.stats.get("exclusions", {}),
            "rho": rounded([rho.value, rho.interval.low, rho.interval.high], 2) if rho else None,
            "first_order_rho": rounded(control.value, 2) if control else None,
            "verdict": self.ruling.verdict.value,
        }

    def numbers(self) -> dict:
        s = self.stats
        eff = self.efficacy()
        out = {
            "model type": self.model_type,
            "edited layers (MEMIT)": self.edit_layers,
            "GradSim layer": self.gradsim_layer,
            "lambda (mom2_update_weight)": f"{self.hparams['mom2_update_weight']:g} = {self.hparams['lambda_rule']}, d_mlp {self.d_mlp}",
            "covariance": {k: self.covariance[k] for k in ("tokens", "articles", "seq_len", "seed", "corpus", "sampling",
                                                          "cached_layers", "built_layers", "build_seconds")},
            "known pieces (facts / HotpotQA)": [self.sources[FACTS]["pieces"], self.sources[HOTPOT]["pieces"]],
            "edits attempted / valid / new target top-1": [eff["attempted"], eff["valid"], eff["new_target_top1"]],
            "efficacy": rounded(eff, 3),
            "EM lost / gained over pairs": [self.em["em_lost"], self.em["em_gained"]],
            "GradSim off-diagonal": rounded(self.gradsim_stats(), 3),
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
            "plan: pieces passed over": self.plan_skipped or "none",
            "HotpotQA (descriptive)": rounded(self.hotpot, 3),
        }
        if "gradsim" in s:
            out.update({
                "pairs in the statistic": s["pairs"],
                "pairs left out": s["exclusions"],
                "mean per-edit rho, GradSim vs |dlogP|": str(s["gradsim"]),
                "joint piece-permutation p (one-sided)": rounded(s["permutation_p"], 4),
                "positive control: mean per-edit rho, |first-order| vs |dlogP|": str(s["first_order"]),
                "mean per-edit rho, GradSim vs |first-order|": rounded(s["gradsim_vs_first_order"], 3),
                "rho over pieces of other templates than the edited one": str(s["across_templates"]),
                "pooled Spearman over all pairs (for comparison)": rounded(s["pooled_spearman"], 3),
                "partial rho (controls: same subject, same template)": rounded(s["partial_spearman"], 3),
            })
            out["rho within each template"] = rounded(s["within_template"], 3)
            out["pairs by what they share"] = rounded(s["pair_classes"], 3)
        out["edits"] = [
            {"piece": o.piece_id, "new": o.target_new.strip(), "old": o.answer.strip(),
             "logP old before/after": f"{o.old_logp_before:.2f} / {o.old_logp_after:.2f}",
             "logP new before/after": f"{o.new_logp_before:.2f} / {o.new_logp_after:.2f}",
             "top-1": o.new_top1_after, "valid": o.valid, "written (last layer)": round(o.written[self.edit_layers[-1]], 2)}
            for o in self.outcomes]
        out["piece sources"] = [
            {"source": src, "read": r["read"], "pieces": r["pieces"],
             "dropped": "; ".join(f"{k}: {v}" for k, v in r["dropped"].items()) or "-"}
            for src, r in sorted(self.sources.items())]
        return out

    def criteria(self) -> dict:
        s, eff = self.stats, self.efficacy()
        out: dict = {"valid edits": eff["valid"], "attempted edits": eff["attempted"]}
        if "gradsim" in s:
            out["rho (GradSim vs |dlogP|, mean per edit)"] = s["gradsim"]
            out["positive control rho (|first-order| vs |dlogP|)"] = s["first_order"]
            out["joint permutation p"] = s["permutation_p"]
        return out

    def measurement(self) -> Measurement:
        s, eff, ruling = self.stats, self.efficacy(), self.ruling
        rho: Estimate | None = s.get("gradsim")
        cov = self.covariance
        notes = [
            f"{self.model_type} family. GradSim is the cosine of the gradients of log P(a|q) w.r.t. layer "
            f"{self.gradsim_layer}'s MLP down-projection (the middle of MEMIT's edited layers {self.edit_layers}).",
            f"lambda = {self.hparams['mom2_update_weight']:g}: rescaled by d_mlp ({self.hparams['lambda_rule']}), fixed "
            f"before measuring; the updates write {eff['written_share_last_layer']:.0%} of the residual at the last "
            f"edited layer on average.",
            f"{eff['attempted']} edits attempted, {eff['valid']} valid (P(new) > P(old) after the edit), "
            f"{eff['new_target_top1']} with the new target top-1; only valid edits enter the statistic.",
            f"Covariance C from {cov['tokens']} WikiText-2 train tokens in {cov['articles']} articles (windows of "
            f"{cov['seq_len']}, seed {cov['seed']}); " + (f"built now in {cov['build_seconds']} s (cold cache)."
                                                           if cov["built_layers"] else "read from the cache."),
            "Statistic: mean over valid edits of the per-edit Spearman rho between GradSim(i, j) and "
            "|Delta log P(a_j|q_j)| over the known facts j; interval from a two-way (edits x pieces) bootstrap; "
            "p from permuting piece labels jointly across edits. Pairs left out (the edited piece, pieces whose "
            "answer is the new target, HotpotQA pieces) are counted in 'pairs left out'.",
            "HotpotQA pieces are descriptive: " + self.hotpot["why descriptive"] + f" ({self.hotpot['known pieces']} known).",
            RIPPLE_VS_QIN,
        ]
        if rho is not None:
            notes.insert(0, f"rho = {rho.value:.3f} {rho.interval}; positive control rho = {s['first_order'].value:.3f}; "
                            f"across templates {s['across_templates'].value:.3f}.")
        key = KeyNumber("mean per-edit Spearman rho, GradSim vs |ripple|", rounded(rho.value, 3) if rho else None,
                        "r > 0.82 (Qin et al., their ripple measure)", interval=rho.interval if rho else None)
        return Measurement(verdict=ruling.verdict, key_number=key, criteria=self.criteria(), numbers=self.numbers(),
                           published=PUBLISHED, figures=list(self.figures.values()), notes=notes, ruling=ruling)


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


def _masked_mean(matrix: np.ndarray, mask: np.ndarray) -> float:
    return float(matrix[mask].mean()) if mask.any() else float("nan")

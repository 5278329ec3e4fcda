"""The result of claim 2 on one model: pieces, GradSim, edits, ripple, correlations and the verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from repro.gradsim.pieces import KnowledgePiece
from repro.gradsim.ripple import EFFICACY_MARGIN, EditOutcome
from repro.gradsim.verdict import PUBLISHED, GradSimVerdict
from repro.snapshots import rounded
from repro.verdicts import KeyNumber, Measurement, Verdict


@dataclass
class GradSimResult:
    model: str
    n_layers: int
    edit_layers: list[int]
    gradsim_layer: int
    settings: dict
    hparams: dict
    sources: dict[str, dict]  # source -> {read, pieces, dropped: {reason: count}}
    pieces: list[KnowledgePiece]
    gradsim: np.ndarray  # [N, N]
    relations: dict[str, np.ndarray]  # name -> [N, N] bool
    outcomes: list[EditOutcome]
    correlations: dict[str, dict]  # "pooled" | "hotpotqa" | "facts" -> correlation_summary
    em: dict[str, int]
    verdict: GradSimVerdict
    seconds: dict[str, float]
    figures: dict[str, Path] = field(default_factory=dict)

    # ---- derived numbers ----
    def gradsim_stats(self) -> dict:
        off = ~np.eye(len(self.pieces), dtype=bool)
        chain = self.relations["same_chain"] & off
        values = self.gradsim[off]
        return {
            "pieces": len(self.pieces),
            "mean": float(values.mean()) if values.size else float("nan"),
            "std": float(values.std()) if values.size else float("nan"),
            "min": float(values.min()) if values.size else float("nan"),
            "max": float(values.max()) if values.size else float("nan"),
            "same_chain_mean": float(self.gradsim[chain].mean()) if chain.any() else float("nan"),
            "cross_chain_mean": float(self.gradsim[off & ~chain].mean()) if (off & ~chain).any() else float("nan"),
        }

    def efficacy(self) -> dict:
        valid = [o for o in self.outcomes if o.valid]
        gains = [o.new_logp_after - o.new_logp_before for o in self.outcomes]
        paraphrase = [o.paraphrase_success for o in valid if o.paraphrase_success is not None]
        return {
            "attempted": len(self.outcomes),
            "valid": len(valid),
            "failed": len(self.outcomes) - len(valid),
            "new_target_top1": sum(o.new_top1_after for o in self.outcomes),
            "mean_logp_gain": float(np.mean(gains)) if gains else float("nan"),
            "paraphrase_success": float(np.mean(paraphrase)) if paraphrase else float("nan"),
            "control_abs_delta": float(np.mean([o.control_abs_delta for o in valid])) if valid else float("nan"),
        }

    def snapshot(self) -> dict:
        """Counts exactly; GradSim statistics to 3 decimals; efficacy and correlations to 2 (edits run 20
        Adam steps, whose float noise between thread counts must not flip a stored digit)."""
        pooled = self.correlations["pooled"]
        eff = self.efficacy()
        return {
            "model": self.model,
            "edit_layers": self.edit_layers,
            "gradsim_layer": self.gradsim_layer,
            "pieces": {s: {k: v for k, v in r.items()} for s, r in sorted(self.sources.items())},
            "gradsim": rounded(self.gradsim_stats(), 3),
            "efficacy": {"attempted": eff["attempted"], "valid": eff["valid"],
                         "mean_logp_gain": rounded(eff["mean_logp_gain"], 1)},
            "spearman": rounded(pooled["spearman"], 2),
            "ci": rounded([pooled["ci_low"], pooled["ci_high"]], 2),
            "verdict": self.verdict.verdict,
        }

    def numbers(self) -> dict:
        pooled = self.correlations["pooled"]
        out = {
            "verdict": self.verdict.verdict,
            "edited layers (MEMIT)": self.edit_layers,
            "GradSim layer": self.gradsim_layer,
            "pieces (HotpotQA / known facts)": [self.sources.get("hotpotqa", {}).get("pieces", 0),
                                               self.sources.get("facts", {}).get("pieces", 0)],
            "edits attempted / valid": [len(self.outcomes), sum(o.valid for o in self.outcomes)],
            "pairs (valid edit, other piece)": pooled["pairs"],
            "Spearman rho (pooled)": rounded(pooled["spearman"], 3),
            "Pearson r (pooled)": rounded(pooled["pearson"], 3),
            "within-edit permutation p": rounded(pooled["permutation_p"], 4),
            "cluster-bootstrap 95% CI": rounded([pooled["ci_low"], pooled["ci_high"]], 3),
            "partial rho (controls: same subject, same template)": rounded(pooled["partial_spearman"], 3),
            "same-chain / cross-chain mean |dlogP|": rounded([pooled.get("same_chain_mean_ripple"),
                                                             pooled.get("cross_chain_mean_ripple")], 3),
            "same-chain / cross-chain mean GradSim": rounded([pooled.get("same_chain_mean_gradsim"),
                                                             pooled.get("cross_chain_mean_gradsim")], 3),
            "EM lost / gained over pairs": [self.em["em_lost"], self.em["em_gained"]],
            "efficacy": rounded(self.efficacy(), 3),
            "GradSim off-diagonal": rounded(self.gradsim_stats(), 3),
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
        }
        per_source = [
            {"pieces": name, "edits": c["edits"], "pairs": c["pairs"], "Spearman": rounded(c["spearman"], 3),
             "p": rounded(c["permutation_p"], 4), "CI low": rounded(c["ci_low"], 3), "CI high": rounded(c["ci_high"], 3),
             "partial": rounded(c["partial_spearman"], 3)}
            for name, c in self.correlations.items()
        ]
        out["correlation by source"] = per_source
        out["piece sources"] = [
            {"source": s, "read": r["read"], "pieces": r["pieces"],
             "dropped": "; ".join(f"{k}: {v}" for k, v in r["dropped"].items()) or "-"}
            for s, r in sorted(self.sources.items())
        ]
        return out

    def measurement(self) -> Measurement:
        v, pooled, eff = self.verdict, self.correlations["pooled"], self.efficacy()
        notes = [
            f"GradSim is the cosine of the gradients of log P(a|q) w.r.t. layer {self.gradsim_layer}'s MLP "
            f"down-projection (the middle of MEMIT's edited layers {self.edit_layers}).",
            f"{eff['attempted']} MEMIT edits attempted, {eff['valid']} valid (new target top-1 or log P up by "
            f">= {EFFICACY_MARGIN:.2f} nats); failed edits are excluded from the correlation.",
            "Ripple is |Delta log P(a_j|q_j)| of every other piece j after editing piece i; the p-value permutes "
            "ripple within each edit, the CI resamples edits (cluster bootstrap).",
            f"Partial Spearman controlling for shared subject/template: {pooled['partial_spearman']:.3f} "
            "(is GradSim more than surface overlap?).",
            f"MEMIT settings: layers {self.edit_layers}, {sum(map(len, self.hparams['contexts']))} contexts "
            f"(MEMIT: 6), {self.hparams['v_num_grad_steps']} Adam steps, lambda {self.hparams['mom2_update_weight']:g}, "
            f"covariance over {self.hparams['mom2_tokens']:,} WikiText-2 tokens.",
        ]
        if not v.enough_valid:
            notes.append(f"Fewer than half of the edits took ({v.valid_share:.0%}): the verdict is at most PARTIAL.")
        return Measurement(
            verdict=Verdict(v.verdict),
            key_number=KeyNumber("Spearman rho, GradSim vs |ripple| (pooled valid edits)",
                                 rounded(pooled["spearman"], 3), "strong positive"),
            criteria=v.criteria(),
            numbers=self.numbers(),
            published=PUBLISHED,
            figures=list(self.figures.values()),
            notes=notes,
        )

"""Claim 1's result: the effect matrices at every granularity, the verdict and the figures.

``measurement()`` is the record for the report, ``snapshot()`` the rounded numbers that are the same on
every run and thread count, ``write_results`` the command line's files (matrices as .npy, a JSON summary).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from repro.files import write_json_atomic, write_npy_atomic
from repro.ioi.verdict import DEPTH, PUBLISHED, IOICriteria, relative_depth
from repro.profiles import IOISettings
from repro.snapshots import rounded
from repro.verdicts import Estimate, KeyNumber, Measurement, Ruling

MATRICES = ("heads", "heads_final", "attn_layers", "mlp_layers", "resid", "attribution", "attribution_final")


def head_name(layer_head) -> str:
    """(9, 9) -> "9.9", the way the IOI literature names heads."""
    return f"{layer_head[0]}.{layer_head[1]}"


def parse_head(name: str) -> tuple[int, int]:
    layer, head = name.split(".")
    return int(layer), int(head)


def ranked_heads(matrix: np.ndarray, k: int) -> list[dict]:
    """The ``k`` heads of largest |value| in ``matrix[layer, head]``, largest first (ties: lowest index)."""
    order = np.argsort(-np.abs(matrix), axis=None, kind="stable")[:k]
    return [{"head": head_name(np.unravel_index(i, matrix.shape)), "effect": float(matrix.flat[i])} for i in order]


@dataclass
class IOIResult:
    model: str
    n_layers: int
    n_heads: int
    settings: IOISettings
    corruption: str
    vocabulary: dict[str, int]  # kept/dropped word counts for this tokenizer
    n_pairs: int
    n_kept: int
    drop_reasons: dict[str, int]
    clean_ld_mean: float
    corrupted_ld_mean: float
    heads: np.ndarray  # [layer, head] normalised effect, all positions
    heads_final: np.ndarray  # [layer, head] final position only
    attn_layers: np.ndarray  # [layer]
    mlp_layers: np.ndarray  # [layer]
    resid: np.ndarray  # [layer, pos] on the representative template's pairs
    resid_tokens: list[str]
    resid_template: int
    resid_n_pairs: int
    attribution: np.ndarray  # [layer, head]
    attribution_final: np.ndarray
    attribution_spearman: float
    attribution_spearman_final: float
    attribution_disagreements: list[dict]  # heads where attribution and exact differ most
    layer_shares: np.ndarray  # [layer] share of total |head effect|
    top_heads: list[dict]  # 10 largest |effect|, all positions
    criteria: IOICriteria  # the rule's quantities on all kept pairs
    ruling: Ruling  # the verdict from their bootstrap intervals over pairs
    estimates: dict[str, Estimate]  # every statistic of the rule with its interval
    top_head_stability: float  # fraction of bootstrap resamples with the same top head
    handoff_layer: int | None  # first layer where END's residual carries the answer (resid map)
    seconds: dict[str, float]  # stage -> wall time (repro.timing.StageTimer)
    cache_bytes_max: int
    figures: dict[str, Path] = field(default_factory=dict)

    def snapshot(self) -> dict:
        """Numbers for regression snapshots: only what is stable across runs and thread counts, rounded.
        Head rankings beyond the top head are left out (near-ties may swap on float noise)."""
        v = self.criteria
        return {
            "model": self.model,
            "n_pairs": self.n_pairs,
            "n_kept": self.n_kept,
            "drop_reasons": dict(sorted(self.drop_reasons.items())),
            "clean_logit_diff": rounded(self.clean_ld_mean),
            "corrupted_logit_diff": rounded(self.corrupted_ld_mean),
            "verdict": self.ruling.verdict.value,
            "decided_by": self.ruling.decided_by,
            "intervals": {name: rounded([e.value, e.interval.low, e.interval.high]) for name, e in self.estimates.items()},
            "top_head_stability": rounded(self.top_head_stability, 2),
            "top_head": list(v.top_head),
            "band_layers": v.band_layers,
            "band_share": rounded(v.band_share),
            "best_window": v.best_window,
            "best_window_share": rounded(v.best_window_share),
            "low_share": rounded(v.low_share),
            "mid_share": rounded(v.mid_share),
            "layer_shares": rounded(self.layer_shares),
            "attn_layers": rounded(self.attn_layers),
            "mlp_layers": rounded(self.mlp_layers),
            "attribution_spearman": rounded(self.attribution_spearman, 2),
        }

    def numbers(self) -> dict:
        """Headline numbers for the report."""
        v = self.criteria
        return {
            "verdict": self.ruling.verdict.value,
            "pairs kept": f"{self.n_kept}/{self.n_pairs}",
            **{f"{name} (95% interval)": e for name, e in self.estimates.items()},
            "top head the same in bootstrap resamples": rounded(self.top_head_stability, 3),
            "clean logit diff (published GPT-2: 3.5)": rounded(self.clean_ld_mean),
            "corrupted logit diff": rounded(self.corrupted_ld_mean),
            "top head": head_name(v.top_head),
            "top head relative depth": rounded(relative_depth(v.top_head[0], self.n_layers)),
            "band layers (9-10 of 12)": v.band_layers,
            "band share of |head effect|": rounded(v.band_share),
            "best window": v.best_window,
            "best window share": rounded(v.best_window_share),
            "lowest-quarter share": rounded(v.low_share),
            "mid band (7-8 of 12) layers": v.mid_layers,
            "mid band share, all positions / final position": rounded([v.mid_share, v.mid_share_final]),
            "residual hand-off to END at layer": self.handoff_layer,
            "top 10 heads": [f"{h['head']} {h['effect']:+.3f}" for h in self.top_heads],
            "attribution vs exact Spearman (all pos / final pos)": rounded(
                [self.attribution_spearman, self.attribution_spearman_final]
            ),
            "seconds": {k: round(s, 1) for k, s in self.seconds.items()},
            "cache MB (one batch, clean + corrupted)": round(self.cache_bytes_max / 2**20, 1),
        }

    def measurement(self) -> Measurement:
        """The record for the report."""
        v = self.criteria
        notes = [
            f"Bands are relative depths (layer + 1/2) / {self.n_layers}: the seed's layers 9-10 of 12 are layers "
            f"{v.band_layers} here, 7-8 of 12 are {v.mid_layers}, the lowest quarter is {v.low_layers}.",
            "Effects are (patched - corrupted) / (clean - corrupted) of the batch-mean logit diff IO - S at the "
            f"final position, patching clean activations into the {self.corruption} corrupted run.",
            f"Attribution patching (one backward pass) ranks heads like exact patching with Spearman "
            f"{self.attribution_spearman:.3f} (final position only: {self.attribution_spearman_final:.3f}).",
        ]
        if not v.band_is_best:
            notes.append(
                f"The heaviest window of {len(v.band_layers)} layers is {v.best_window} "
                f"({v.best_window_share:.0%} of |head effect|), not the band ({v.band_share:.0%})."
            )
        if self.model != "gpt2":
            notes.append(
                "The published head indices (9.9, 10.7, ...) are GPT-2 small's; other models are compared by depth."
            )
        notes.append(
            f"Intervals: bootstrap over the {self.n_kept} kept pairs (each resample re-averages the clean, corrupted "
            f"and patched logit diffs before normalising); the top head {head_name(v.top_head)} is the top head in "
            f"{self.top_head_stability:.0%} of resamples."
        )
        return Measurement(
            verdict=self.ruling.verdict,
            key_number=KeyNumber(
                "relative depth of the most important head",
                rounded(relative_depth(v.top_head[0], self.n_layers)),
                "0.79-0.88 (layers 9-10 of 12)",
                interval=self.estimates[DEPTH].interval,
            ),
            criteria={**self.estimates, **{k: x for k, x in v.as_dict().items() if k not in ("band_share", "low_share", "best_window_share")}},
            ruling=self.ruling,
            numbers=self.numbers(),
            published=PUBLISHED,
            figures=list(self.figures.values()),
            notes=notes,
        )


def write_results(result: IOIResult, out_dir: str | Path) -> dict[str, Path]:
    """Effects as ``<model>-ioi-<matrix>.npy`` and a JSON summary ``<model>-ioi-effects.json`` (numbers,
    criteria, matrices as lists), each written atomically."""
    out_dir = Path(out_dir)
    key = result.model
    written = {name: write_npy_atomic(out_dir / f"{key}-ioi-{name}.npy", getattr(result, name)) for name in MATRICES}
    summary = {
        "model": key,
        "settings": {
            "n_pairs": result.n_pairs,
            "pair_seed": result.settings.pair_seed,
            "corruption": result.corruption,
        },
        "vocabulary": result.vocabulary,
        "numbers": result.numbers(),
        "criteria": result.criteria.as_dict(),
        "ruling": result.ruling,
        "top_heads": result.top_heads,
        "attribution_disagreements": result.attribution_disagreements,
        "resid_tokens": result.resid_tokens,
        "effects": {name: getattr(result, name) for name in ("heads", "heads_final", "attn_layers", "mlp_layers", "resid")},
        "figures": {k: p.name for k, p in result.figures.items()},
    }
    written["json"] = write_json_atomic(out_dir / f"{key}-ioi-effects.json", summary)
    return written

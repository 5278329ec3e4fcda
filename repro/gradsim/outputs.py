"""The seed's output files (seed 001), written atomically into one folder:

``knowledge_pieces.json``, ``coupling_matrix.npy``, ``coupling_analysis.json`` (with the model type, GPT-2
or LLaMA family, as the seed asks), ``ripple_experiments.json``, ``correlation_analysis.json``,
``coupling_heatmap.png``, ``comprehensive_analysis.png`` (six panels) and ``final_mvp_report.md``. Each
figure is drawn once, here (``run_gradsim`` is called without a figure folder).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from repro.files import write_json_atomic, write_npy_atomic, write_text_atomic
from repro.gradsim import plots
from repro.gradsim.result import GradSimResult
from repro.report import fmt, key_value_table, markdown_table

SEED_FILES = (
    "knowledge_pieces.json", "coupling_matrix.npy", "coupling_analysis.json", "ripple_experiments.json",
    "correlation_analysis.json", "coupling_heatmap.png", "comprehensive_analysis.png", "final_mvp_report.md",
)


def _top_pairs(result: GradSimResult, k: int = 10) -> list[dict]:
    n = len(result.pieces)
    iu = np.triu_indices(n, 1)
    order = np.argsort(-result.gradsim[iu], kind="stable")[:k]
    return [{"i": result.pieces[iu[0][o]].piece_id, "j": result.pieces[iu[1][o]].piece_id,
             "gradsim": float(result.gradsim[iu[0][o], iu[1][o]]),
             **{name: bool(rel[iu[0][o], iu[1][o]]) for name, rel in result.relations.items()}} for o in order]


def write_seed_outputs(result: GradSimResult, out: str | Path) -> list[Path]:
    out = Path(out)
    result.figures = plots.all_figures(result, {name: out / f"{name}.png" for name in plots.FIGURES})
    m = result.measurement()
    written = [
        write_json_atomic(out / "knowledge_pieces.json", {
            "sources": result.sources, "pieces": [dataclasses.asdict(p) for p in result.pieces]}),
        write_npy_atomic(out / "coupling_matrix.npy", result.gradsim),
        write_json_atomic(out / "coupling_analysis.json", {
            "model": result.model, "model_type": result.model_type, "n_layers": result.n_layers,
            "gradsim_layer": result.gradsim_layer, "statistics": result.gradsim_stats(),
            "piece_ids": [p.piece_id for p in result.pieces], "top_pairs": _top_pairs(result),
            "relations": {k: v.astype(int) for k, v in result.relations.items()}}),
        write_json_atomic(out / "ripple_experiments.json", {
            "model": result.model, "model_type": result.model_type, "edit_layers": result.edit_layers,
            "hparams": result.hparams, "covariance": result.covariance, "contexts": result.contexts,
            "efficacy": result.efficacy(), "em": result.em, "plan_skipped": result.plan_skipped,
            "edits": [{**o.summary(), "delta_logp": o.delta_logp, "first_order": o.first_order,
                       "em_before": o.em_before, "em_after": o.em_after} for o in result.outcomes]}),
        write_json_atomic(out / "correlation_analysis.json", {
            "verdict": m.verdict.value, "decided_by": result.ruling.decided_by, "to_decide": result.ruling.to_decide,
            "criteria": m.criteria, "statistics": result.stats, "hotpotqa": result.hotpot}),
        *result.figures.values(),
        write_text_atomic(out / "final_mvp_report.md", mvp_report(result)),
    ]
    return written


def mvp_report(result: GradSimResult) -> str:
    m = result.measurement()
    numbers = {k: v for k, v in m.numbers.items() if not isinstance(v, (dict, list)) or k.startswith("known pieces")}
    lines = [
        f"# Knowledge coupling MVP — `{result.model}` ({result.model_type} family)",
        "",
        f"**Verdict: {m.verdict.value}** (decided by {result.ruling.decided_by}) — {m.key_number.name}: "
        f"{fmt(m.key_number.ours)} {m.key_number.interval or ''}",
        "",
        *[f"- {note}" for note in m.notes],
        "",
        "## Numbers",
        "",
        key_value_table(numbers),
        "",
        "## Rho within each template",
        "",
        markdown_table(m.numbers.get("rho within each template") or [{"template": "-"}]),
        "",
        "## Pieces",
        "",
        markdown_table(m.numbers["piece sources"]),
        "",
        "## Edits",
        "",
        markdown_table(m.numbers["edits"]) if result.outcomes else "(none)",
        "",
        "Figures: `coupling_heatmap.png`, `comprehensive_analysis.png`.",
        "",
    ]
    return "\n".join(lines)

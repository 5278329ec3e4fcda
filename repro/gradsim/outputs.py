"""The seed's output files (seed 001), written atomically into one folder:

``knowledge_pieces.json``, ``coupling_matrix.npy``, ``coupling_analysis.json``, ``ripple_experiments.json``,
``correlation_analysis.json``, ``coupling_heatmap.png``, ``comprehensive_analysis.png`` (six panels) and
``final_mvp_report.md``.
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
    written = [
        write_json_atomic(out / "knowledge_pieces.json", {
            "sources": result.sources, "pieces": [dataclasses.asdict(p) for p in result.pieces]}),
        write_npy_atomic(out / "coupling_matrix.npy", result.gradsim),
        write_json_atomic(out / "coupling_analysis.json", {
            "model": result.model, "gradsim_layer": result.gradsim_layer, "statistics": result.gradsim_stats(),
            "piece_ids": [p.piece_id for p in result.pieces], "top_pairs": _top_pairs(result),
            "relations": {k: v.astype(int) for k, v in result.relations.items()}}),
        write_json_atomic(out / "ripple_experiments.json", {
            "model": result.model, "edit_layers": result.edit_layers, "hparams": result.hparams,
            "efficacy": result.efficacy(), "em": result.em,
            "edits": [{**o.summary(), "delta_logp": o.delta_logp, "em_before": o.em_before, "em_after": o.em_after}
                      for o in result.outcomes]}),
        write_json_atomic(out / "correlation_analysis.json", {
            "verdict": result.verdict.criteria(), "correlations": result.correlations}),
        plots.coupling_heatmap(result, out / "coupling_heatmap.png"),
        plots.comprehensive_analysis(result, out / "comprehensive_analysis.png"),
        write_text_atomic(out / "final_mvp_report.md", mvp_report(result)),
    ]
    return written


def mvp_report(result: GradSimResult) -> str:
    m = result.measurement()
    numbers = {k: v for k, v in m.numbers.items() if not isinstance(v, (dict, list)) or k.startswith("pieces (")}
    lines = [
        f"# Knowledge coupling MVP — `{result.model}`",
        "",
        f"**Verdict: {m.verdict.value}** — {m.key_number.name}: {fmt(m.key_number.ours)}",
        "",
        *[f"- {note}" for note in m.notes],
        "",
        "## Numbers",
        "",
        key_value_table(numbers),
        "",
        "## Correlation by piece source",
        "",
        markdown_table(m.numbers["correlation by source"]),
        "",
        "## Pieces",
        "",
        markdown_table(m.numbers["piece sources"]),
        "",
        "## Edits",
        "",
        markdown_table([{"piece": o.piece_id, "prompt": o.prompt, "old": o.answer, "new": o.target_new,
                         "log P(new) before": round(o.new_logp_before, 2), "after": round(o.new_logp_after, 2),
                         "valid": o.valid} for o in result.outcomes]) if result.outcomes else "(none)",
        "",
        "Figures: `coupling_heatmap.png`, `comprehensive_analysis.png`.",
        "",
    ]
    return "\n".join(lines)

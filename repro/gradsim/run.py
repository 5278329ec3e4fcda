"""Claim 2 end to end: pieces -> GradSim -> MEMIT edits -> ripple -> correlation -> verdict -> figures.

``run_gradsim`` is what the claim module and the command line call.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from repro.assets import hotpotqa
from repro.files import figure_path
from repro.gradsim import plots
from repro.gradsim.correlation import correlation_summary, pair_table
from repro.gradsim.coupling import gradsim_layer, gradsim_matrix, pair_relations
from repro.gradsim.memit import MemitHyperParams, context_templates, edit_layers, second_moments
from repro.gradsim.pieces import (
    FACTS,
    HOTPOT,
    KnowledgePiece,
    PieceSet,
    control_pieces,
    fact_pieces,
    hotpot_pieces,
    is_known,
)
from repro.gradsim.result import GradSimResult
from repro.gradsim.ripple import counterfactual_plan, em_changes, run_edits
from repro.gradsim.scoring import Scorer, prompt_ids, tokenize
from repro.gradsim.verdict import gradsim_verdict
from repro.profiles import GradSimSettings
from repro.timing import StageTimer

MAX_PROMPT_TOKENS = 48  # longer HotpotQA sentences are dropped (cost grows with length; the reason is counted)


def memit_hparams(n_layers: int, settings: GradSimSettings) -> MemitHyperParams:
    return MemitHyperParams(layers=tuple(edit_layers(n_layers)), mom2_tokens=settings.mom2_tokens,
                            v_num_grad_steps=settings.v_num_grad_steps, n_context_templates=settings.context_templates,
                            context_length=settings.context_length)


def known_facts(lm, facts: PieceSet) -> PieceSet:
    """The fixture's pieces the model holds (``pieces.is_known``); the rest counted as dropped."""
    logp, greedy = Scorer(lm.adapter, tokenize(lm.tokenizer, [(p.prompt, p.answer) for p in facts.pieces]))()
    kept = PieceSet(read=facts.read, drops=facts.drops.copy())
    for piece, lp, match in zip(facts.pieces, logp.tolist(), greedy.tolist()):
        if is_known(lp, match):
            kept.pieces.append(piece)
        else:
            kept.drops["piece: not known by the model"] += 1
    return kept


def short_enough(tokenizer, source: PieceSet) -> PieceSet:
    kept = PieceSet(read=source.read, drops=source.drops.copy())
    for piece in source.pieces:
        if len(prompt_ids(tokenizer, piece.prompt)) > MAX_PROMPT_TOKENS:
            kept.drops[f"piece: prompt longer than {MAX_PROMPT_TOKENS} tokens"] += 1
        else:
            kept.pieces.append(piece)
    return kept


def collect_pieces(lm, settings: GradSimSettings, examples: list[dict] | None = None) -> dict[str, PieceSet]:
    hot = hotpot_pieces(hotpotqa() if examples is None else examples, settings.hotpot_examples)
    return {HOTPOT: short_enough(lm.tokenizer, hot), FACTS: known_facts(lm, fact_pieces(settings.fact_chains))}


def correlations(gradsim, relations, outcomes, pieces: list[KnowledgePiece], settings: GradSimSettings) -> dict:
    """Pooled over all valid edits and pieces, and per source (edits of that source, pieces of that source)."""
    ripple = {o.piece: np.abs(o.delta_logp) for o in outcomes if o.valid}
    out = {"pooled": correlation_summary(pair_table(gradsim, ripple, relations), settings.n_permutations,
                                         settings.n_bootstrap, settings.seed)}
    for source in (HOTPOT, FACTS):
        columns = np.array([p.source == source for p in pieces])
        rows = {i: r for i, r in ripple.items() if columns[i]}
        out[source] = correlation_summary(pair_table(gradsim, rows, relations, columns), settings.n_permutations,
                                          settings.n_bootstrap, settings.seed)
    return out


def run_gradsim(lm, settings: GradSimSettings, out_dir: str | Path, examples: list[dict] | None = None,
                progress: bool = True) -> GradSimResult:
    """Claim 2 on one model; figures into ``out_dir``. ``examples``: HotpotQA examples (default: the data
    directory's)."""
    timer = StageTimer()
    adapter, tok = lm.adapter, lm.tokenizer
    hp = memit_hparams(adapter.n_layers, settings)
    with timer.stage("pieces"):
        sources = collect_pieces(lm, settings, examples)
        pieces = [p for s in (HOTPOT, FACTS) for p in sources[s].pieces]
        controls = control_pieces()
    if len(pieces) < 3:
        raise ValueError(f"Only {len(pieces)} knowledge pieces survived ({ {s: v.report() for s, v in sources.items()} }); "
                         "claim 2 needs at least 3.")
    layer = gradsim_layer(list(hp.layers))
    with timer.stage("gradsim"):
        gradsim = gradsim_matrix(adapter, tokenize(tok, [(p.prompt, p.answer) for p in pieces]), layer)
        relations = pair_relations(pieces)
    with timer.stage("covariance"):
        covs = second_moments(lm, list(hp.layers), hp.mom2_tokens, hp.mom2_dtype, progress=progress)
    with timer.stage("edits"):
        contexts = context_templates(adapter, tok, hp.n_context_templates, hp.context_length, sample_seed=settings.seed)
        plan = counterfactual_plan(pieces, settings.max_experiments, settings.seed)
        outcomes = run_edits(lm, pieces, controls, plan, hp, contexts, covs, progress=progress)
    with timer.stage("correlation"):
        corr = correlations(gradsim, relations, outcomes, pieces, settings)
    pooled = corr["pooled"]
    verdict = gradsim_verdict(pooled["spearman"], pooled["permutation_p"], len(outcomes), sum(o.valid for o in outcomes))
    result = GradSimResult(
        model=lm.key, n_layers=adapter.n_layers, edit_layers=list(hp.layers), gradsim_layer=layer,
        settings=dataclasses.asdict(settings), hparams={**dataclasses.asdict(hp), "contexts": contexts},
        sources={s: v.report() for s, v in sources.items()}, pieces=pieces, gradsim=gradsim,
        relations=relations, outcomes=outcomes, correlations=corr, em=em_changes(outcomes), verdict=verdict,
        seconds=timer.seconds,
    )
    out_dir = Path(out_dir)
    with timer.stage("figures"):
        result.figures = {
            "coupling_heatmap": plots.coupling_heatmap(result, figure_path(out_dir, lm.key, "gradsim", "coupling_heatmap")),
            "comprehensive_analysis": plots.comprehensive_analysis(
                result, figure_path(out_dir, lm.key, "gradsim", "comprehensive_analysis")),
        }
    result.seconds["total"] = timer.total()
    return result

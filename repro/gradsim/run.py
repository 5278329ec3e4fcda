"""Claim 2 end to end: pieces -> knowledge check + GradSim (one pass) -> MEMIT edits -> ripple ->
statistics -> verdict -> figures.

``run_gradsim`` is what the claim module and the command line call.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from repro.assets import hotpotqa
from repro.files import figure_path
from repro.gradsim import plots
from repro.gradsim.correlation import edit_table, summarize
from repro.gradsim.coupling import gradsim_layer, pair_relations, piece_gradients
from repro.gradsim.memit import (
    MemitHyperParams,
    context_templates,
    covariance_weight,
    edit_layers,
    second_moments,
)
from repro.gradsim.memit.hparams import LAMBDA_PER_D_MLP
from repro.gradsim.pieces import (
    FACTS,
    HOTPOT,
    PieceSet,
    control_pieces,
    counterfactual_targets,
    fact_pieces,
    hotpot_pieces,
    is_known,
)
from repro.gradsim.result import GradSimResult, hotpot_descriptive
from repro.gradsim.ripple import counterfactual_plan, em_changes, run_edits
from repro.gradsim.scoring import prompt_ids, tokenize
from repro.gradsim.verdict import gradsim_ruling
from repro.profiles import PROFILES, GradSimSettings
from repro.timing import StageTimer
from repro.verdicts import Estimate, Interval

MAX_PROMPT_TOKENS = 48  # longer HotpotQA sentences are dropped (cost grows with length; the reason is counted)
MIN_FACTS = 3


def d_mlp_of(adapter) -> int:
    return int(adapter.down_proj_weight(0).shape[1])


def memit_hparams(adapter, settings: GradSimSettings) -> MemitHyperParams:
    return MemitHyperParams(layers=tuple(edit_layers(adapter.n_layers)), mom2_update_weight=covariance_weight(d_mlp_of(adapter)),
                            mom2_tokens=settings.mom2_tokens, v_num_grad_steps=settings.v_num_grad_steps,
                            n_context_templates=settings.context_templates, context_length=settings.context_length)


def candidate_pieces(tokenizer, settings: GradSimSettings, examples: list[dict] | None = None) -> dict[str, PieceSet]:
    """Every fact of the fixture, and the HotpotQA pieces short enough to run, before the knowledge check."""
    hot = hotpot_pieces(hotpotqa() if examples is None else examples, settings.hotpot_examples)
    short = PieceSet(read=hot.read, drops=hot.drops.copy())
    for piece in hot.pieces:
        if len(prompt_ids(tokenizer, piece.prompt)) > MAX_PROMPT_TOKENS:
            short.drops[f"piece: prompt longer than {MAX_PROMPT_TOKENS} tokens"] += 1
        else:
            short.pieces.append(piece)
    return {FACTS: fact_pieces(), HOTPOT: short}


def _estimate_or_nan(summary: dict, key: str, n: int) -> Estimate:
    if key in summary:
        return summary[key]
    return Estimate(float("nan"), Interval(float("nan"), float("nan"), n, "edits", "too few valid edits for an interval"))


def run_gradsim(lm, settings: GradSimSettings, out_dir: str | Path | None, examples: list[dict] | None = None,
                progress: bool = True) -> GradSimResult:
    """Claim 2 on one model; figures into ``out_dir`` (None: no figures). ``examples``: HotpotQA examples
    (default: the data directory's)."""
    timer = StageTimer()
    adapter, tok = lm.adapter, lm.tokenizer
    hp = memit_hparams(adapter, settings)
    layer = gradsim_layer(list(hp.layers))
    with timer.stage("pieces, knowledge check and GradSim"):
        sources = candidate_pieces(tok, settings, examples)
        candidates = sources[FACTS].pieces + sources[HOTPOT].pieces
        # One pass: log P and greedy match (the knowledge check), GradSim's factors, the first-order factors.
        grads = piece_gradients(adapter, tokenize(tok, [(p.prompt, p.answer) for p in candidates]), list(hp.layers))
        known = [is_known(float(lp), bool(m)) for lp, m in zip(grads.logprob, grads.greedy)]
        rows = {s: [] for s in sources}
        for k, (piece, ok) in enumerate(zip(candidates, known)):
            if ok:
                rows[piece.source].append(k)
            else:
                sources[piece.source].drops["piece: not known by the model (greedy answer or P >= 5%)"] += 1
        for s, source in sources.items():
            source.pieces = [candidates[k] for k in rows[s]]
        grad_rows = rows[FACTS] + rows[HOTPOT]
        pieces = [candidates[k] for k in grad_rows]
        gradsim = grads.gradsim(layer, keep=np.array(grad_rows))
        relations = pair_relations(pieces)
    n_facts = len(rows[FACTS])
    if n_facts < MIN_FACTS:
        raise ValueError(f"Only {n_facts} facts of the fixture are known by {lm.key}; claim 2 needs at least {MIN_FACTS}.")
    with timer.stage("covariance"):
        covs, covariance = second_moments(lm, list(hp.layers), hp.mom2_tokens, hp.mom2_dtype, settings.seed,
                                          settings.mom2_seq_len, progress=progress)
    with timer.stage("contexts"):
        contexts = context_templates(adapter, tok, hp.n_context_templates, hp.context_length, sample_seed=settings.seed)
    with timer.stage("edits and ripple"):
        plan, plan_skipped = counterfactual_plan(pieces, list(range(n_facts)), counterfactual_targets(),
                                                 settings.max_experiments, settings.seed)
        outcomes = run_edits(lm, pieces, control_pieces(), plan, hp, contexts, covs, grads, grad_rows,
                             batch_size=settings.edit_batch, progress=progress)
    with timer.stage("statistics"):
        valid = [o for o in outcomes if o.valid]
        facts = np.array([p.source == FACTS for p in pieces])
        summary: dict = {"edits": len(valid)}
        if len(valid) >= 2:
            table = edit_table(gradsim, [o.piece for o in valid], np.array([o.delta_logp for o in valid]),
                               np.array([o.first_order for o in valid]), [p.answer for p in pieces],
                               [o.target_new for o in valid])
            hot_pairs = int(table.valid[:, ~facts].sum())
            table = table.columns(facts)
            table.exclusions[f"{HOTPOT} piece (descriptive, outside the statistic)"] = hot_pairs
            summary = summarize(table, {k: v[:, facts] for k, v in relations.items()},
                                [p.relation for p in pieces if p.source == FACTS],
                                settings.n_bootstrap, settings.n_permutations, settings.seed)
            summary["relations_of_edits"] = sorted({pieces[o.piece].relation for o in valid})
        hotpot = hotpot_descriptive(pieces, gradsim, valid)
        ruling = gradsim_ruling(
            _estimate_or_nan(summary, "gradsim", len(valid)), _estimate_or_nan(summary, "first_order", len(valid)),
            len(outcomes), len(valid),
            units_by_profile={name: p.gradsim.max_experiments for name, p in PROFILES.items()})
    result = GradSimResult(
        model=lm.key, family=adapter.family, n_layers=adapter.n_layers, d_mlp=d_mlp_of(adapter),
        edit_layers=list(hp.layers), gradsim_layer=layer, settings=dataclasses.asdict(settings),
        hparams={**dataclasses.asdict(hp), "lambda_rule": f"{LAMBDA_PER_D_MLP:.4f} x d_mlp (MEMIT's GPT-J lambda / d_mlp)"},
        covariance=covariance, contexts=contexts, sources={s: v.report() for s, v in sources.items()},
        pieces=pieces, gradsim=gradsim, relations=relations, outcomes=outcomes, plan_skipped=dict(plan_skipped),
        stats=summary, hotpot=hotpot, em=em_changes(outcomes), ruling=ruling, seconds=timer.seconds,
    )
    if out_dir is not None:
        with timer.stage("figures"):
            result.figures = plots.all_figures(result, {name: figure_path(out_dir, lm.key, "gradsim", name)
                                                        for name in plots.FIGURES})
    result.seconds["total"] = timer.total()
    return result

"""Ripple: how an edit of piece i moves every other piece j (seed 001, stage 2).

The edits of a plan are computed in batches (``memit_edits``: their forward passes shared, each edit what
MEMIT computes for it alone). Then, one at a time, an edit's deltas go into the model (``applied``), every
piece and the control facts are scored again, and the weights are restored exactly. Recorded per edit:

- efficacy: log P of the old answer and of the new target on the edited prompt, before and after, and
  whether the new target becomes the greedy continuation (top-1). An edit is *valid* when the new target
  beats the old answer after the edit, P(new) > P(old): a rise of log P(new) alone can leave the old
  answer on top (issue 15: " Finnish" 10x likelier while " Japanese" also rose). Only valid edits enter
  the correlation; the others are counted;
- ripple: Delta log P(a_j | q_j) and the exact-match change of every piece j;
- the first-order prediction of that change, sum_layers <grad_W log P(a_j|q_j), Delta W_i> (the positive
  control, from ``coupling.first_order_change``);
- generalisation on the edited fact's paraphrases; specificity: mean |Delta log P| of unrelated controls;
- the share of each layer's residual the update writes (``MemitEdit.written``) and the z optimisation.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from repro.gradsim.coupling import PieceGradients, first_order_change
from repro.gradsim.memit import CovarianceSolve, EditRequest, MemitHyperParams, applied, memit_edits
from repro.gradsim.pieces import KnowledgePiece
from repro.gradsim.scoring import Scorer, score, tokenize


@dataclass
class EditOutcome:
    piece: int  # index of the edited piece
    piece_id: str
    relation: str | None
    prompt: str
    subject: str
    answer: str
    target_new: str
    old_logp_before: float
    old_logp_after: float
    new_logp_before: float
    new_logp_after: float
    new_top1_after: bool
    valid: bool  # P(new) > P(old) after the edit
    delta_logp: np.ndarray  # [N] Delta log P(a_j | q_j) for every piece (entry ``piece``: its own old answer)
    first_order: np.ndarray  # [N] the first-order prediction of delta_logp
    em_before: np.ndarray  # [N] bool
    em_after: np.ndarray  # [N] bool
    control_abs_delta: float  # mean |Delta log P| over the control facts
    paraphrase_gain: float | None  # mean rise of log P(new target) over the paraphrases
    paraphrase_success: float | None  # share of paraphrases where the new target beats the old answer
    z_steps: int
    z_nll: float  # mean NLL per target token at z, over the contexts
    delta_norm: float
    h_norm: float
    written: dict[int, float]  # layer -> share of its residual the update writes
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        """Everything but the per-piece arrays (for JSON)."""
        skip = {"delta_logp", "first_order", "em_before", "em_after"}
        return {k: v for k, v in self.__dict__.items() if k not in skip}


def counterfactual_plan(pieces: list[KnowledgePiece], candidates: list[int], targets: dict[str, list[str]],
                        max_edits: int, seed: int) -> tuple[list[tuple[int, str]], Counter]:
    """Up to ``max_edits`` (piece index, new target): pieces drawn from ``candidates`` in a seeded order,
    each given an answer of its own kind (a city for a city, a year for a year) other than its own.
    Also the pieces passed over, by reason (none is dropped silently)."""
    rng = np.random.default_rng(seed)
    plan, skipped = [], Counter()
    for i in [candidates[k] for k in rng.permutation(len(candidates))]:
        if len(plan) == max_edits:
            break
        piece = pieces[i]
        options = [t for t in targets.get(piece.kind, []) if t.strip().lower() != piece.answer.strip().lower()]
        if not options:
            skipped[f"no other answer of kind {piece.kind!r}"] += 1
            continue
        plan.append((i, options[int(rng.integers(len(options)))]))
    return plan, skipped


def run_edits(lm, pieces: list[KnowledgePiece], controls: list[KnowledgePiece], plan: list[tuple[int, str]],
              hp: MemitHyperParams, contexts: list[list[str]], covs: dict, grads: PieceGradients,
              grad_rows: list[int], batch_size: int = 20, progress: bool = True) -> list[EditOutcome]:
    """One MEMIT edit per (piece index, new target) in ``plan``, each measured and then undone.
    ``grads`` holds the pieces' gradient factors, piece k at row ``grad_rows[k]``."""
    adapter, tok = lm.adapter, lm.tokenizer
    n = len(pieces)
    scorer = Scorer(adapter, tokenize(tok, [(p.prompt, p.answer) for p in pieces + controls]), start=hp.layers[0])
    base_logp, base_em = scorer()
    solvers = {layer: CovarianceSolve(covs[layer], hp.mom2_update_weight) for layer in hp.layers}
    outcomes = []
    bar = tqdm(total=len(plan), desc="MEMIT edits", disable=not progress)
    for lo in range(0, len(plan), batch_size):
        batch = plan[lo : lo + batch_size]
        requests = [EditRequest(pieces[i].prompt, pieces[i].subject, t) for i, t in batch]
        own = [_own_pairs(pieces[i], t) for i, t in batch]
        own_before, _ = score(adapter, tok, [pair for pairs in own for pair in pairs])
        own_before = own_before.split([len(pairs) for pairs in own])
        edits = memit_edits(adapter, tok, requests, hp, contexts, solvers)
        for (i, target_new), edit, pairs, before in zip(batch, edits, own, own_before):
            start = time.perf_counter()
            piece = pieces[i]
            with applied(adapter, edit.deltas(adapter.down_proj_weight(hp.layers[0]).dtype)):
                after_logp, after_em = scorer()
                after, after_top1 = score(adapter, tok, pairs)
            delta = (after_logp - base_logp).numpy()
            predicted = first_order_change(grads, edit.factors, grad_rows)
            para_new, para_old = after[2::2], after[3::2]
            outcomes.append(EditOutcome(
                piece=i, piece_id=piece.piece_id, relation=piece.relation, prompt=piece.prompt, subject=piece.subject,
                answer=piece.answer, target_new=target_new,
                old_logp_before=float(before[1]), old_logp_after=float(after[1]),
                new_logp_before=float(before[0]), new_logp_after=float(after[0]), new_top1_after=bool(after_top1[0]),
                valid=bool(after[0] > after[1]),
                delta_logp=delta[:n], first_order=predicted, em_before=base_em[:n].numpy(), em_after=after_em[:n].numpy(),
                control_abs_delta=float(np.abs(delta[n:]).mean()) if controls else float("nan"),
                paraphrase_gain=float((para_new - before[2::2]).mean()) if piece.paraphrases else None,
                paraphrase_success=float((para_new > para_old).double().mean()) if piece.paraphrases else None,
                z_steps=edit.target.steps, z_nll=edit.target.nll_after, delta_norm=edit.target.delta_norm,
                h_norm=edit.target.h_norm, written=edit.written,
                seconds={**edit.seconds, "ripple": time.perf_counter() - start},
            ))
            bar.update(1)
    bar.close()
    return outcomes


def _own_pairs(piece: KnowledgePiece, target_new: str) -> list[tuple[str, str]]:
    """The edited prompt with the new target and the old answer, then each paraphrase with both."""
    return [(piece.prompt, target_new), (piece.prompt, piece.answer)] + [
        (q, a) for q in piece.paraphrases for a in (target_new, piece.answer)]


def em_changes(outcomes: list[EditOutcome]) -> dict[str, int]:
    """Exact-match flips over all (valid edit, other piece) pairs."""
    lost = gained = pairs = 0
    for o in outcomes:
        if not o.valid:
            continue
        others = np.arange(len(o.delta_logp)) != o.piece
        lost += int((o.em_before & ~o.em_after & others).sum())
        gained += int((~o.em_before & o.em_after & others).sum())
        pairs += int(others.sum())
    return {"pairs": pairs, "em_lost": lost, "em_gained": gained}

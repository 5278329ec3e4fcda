"""Ripple: how an edit of piece i moves every other piece j (seed 001, stage 2).

For each edit: MEMIT writes the counterfactual target into the model (``applied``), every piece and the
control facts are scored again, and the weights are restored exactly. Recorded per edit:

- efficacy: log P(new target | q_i) before and after, and whether the new target becomes the greedy
  continuation. An edit is *valid* when the new target becomes top-1 or its log-probability rises by at
  least ``EFFICACY_MARGIN`` nats (10x); failed edits are flagged and excluded from the correlation;
- ripple: Delta log P(a_j | q_j) and the exact-match change of every piece j;
- generalisation: the same on the edited fact's paraphrases, where its template gives them;
- specificity: mean |Delta log P| of unrelated control facts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from repro.gradsim.memit import EditRequest, MemitHyperParams, applied, memit_edit
from repro.gradsim.pieces import KnowledgePiece
from repro.gradsim.scoring import Scorer, score, tokenize

EFFICACY_MARGIN = math.log(10)  # nats: the new target at least 10x more likely than before the edit


@dataclass
class EditOutcome:
    piece: int  # index of the edited piece
    piece_id: str
    prompt: str
    subject: str
    answer: str
    target_new: str
    new_logp_before: float
    new_logp_after: float
    old_logp_after: float
    new_top1_after: bool
    valid: bool
    delta_logp: np.ndarray  # [N] Delta log P(a_j | q_j) for every piece (entry ``piece``: its own old answer)
    em_before: np.ndarray  # [N] bool
    em_after: np.ndarray  # [N] bool
    control_abs_delta: float  # mean |Delta log P| over the control facts
    paraphrase_gain: float | None  # mean rise of log P(new target) over the paraphrases
    paraphrase_success: float | None  # share of paraphrases where the new target beats the old answer
    z_steps: int
    delta_norm: float
    h_norm: float
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        """Everything but the per-piece arrays (for JSON)."""
        skip = {"delta_logp", "em_before", "em_after"}
        return {k: v for k, v in self.__dict__.items() if k not in skip}


def run_edits(lm, pieces: list[KnowledgePiece], controls: list[KnowledgePiece], plan: list[tuple[int, str]],
              hp: MemitHyperParams, contexts: list[list[str]], covs: dict, progress: bool = True) -> list[EditOutcome]:
    """One MEMIT edit per (piece index, new target) in ``plan``, each measured and then undone."""
    adapter, tok = lm.adapter, lm.tokenizer
    n = len(pieces)
    scorer = Scorer(adapter, tokenize(tok, [(p.prompt, p.answer) for p in pieces + controls]), start=hp.layers[0])
    base_logp, base_em = scorer()
    outcomes = []
    for i, target_new in tqdm(plan, desc="MEMIT edits", disable=not progress):
        piece = pieces[i]
        own = [(piece.prompt, target_new)] + [(q, a) for q in piece.paraphrases for a in (target_new, piece.answer)]
        own_before, _ = score(adapter, tok, own)
        start = time.perf_counter()
        edit = memit_edit(adapter, tok, EditRequest(piece.prompt, piece.subject, target_new), hp, contexts, covs)
        with applied(adapter, edit.deltas):
            after_logp, after_em = scorer()
            own_after, own_em = score(adapter, tok, own + [(piece.prompt, piece.answer)])
        seconds = {**edit.seconds, "ripple": time.perf_counter() - start - sum(edit.seconds.values())}
        gain = float(own_after[0] - own_before[0])
        para_new, para_old = own_after[1:-1:2], own_after[2:-1:2]
        delta = (after_logp - base_logp).numpy()
        outcomes.append(EditOutcome(
            piece=i, piece_id=piece.piece_id, prompt=piece.prompt, subject=piece.subject, answer=piece.answer,
            target_new=target_new, new_logp_before=float(own_before[0]), new_logp_after=float(own_after[0]),
            old_logp_after=float(own_after[-1]), new_top1_after=bool(own_em[0]),
            valid=bool(own_em[0]) or gain >= EFFICACY_MARGIN,
            delta_logp=delta[:n], em_before=base_em[:n].numpy(), em_after=after_em[:n].numpy(),
            control_abs_delta=float(np.abs(delta[n:]).mean()) if controls else float("nan"),
            paraphrase_gain=float((para_new - own_before[1::2]).mean()) if piece.paraphrases else None,
            paraphrase_success=float((para_new > para_old).double().mean()) if piece.paraphrases else None,
            z_steps=edit.target.steps, delta_norm=edit.target.delta_norm, h_norm=edit.target.h_norm,
            seconds=seconds,
        ))
    return outcomes


def counterfactual_plan(pieces: list[KnowledgePiece], max_edits: int, seed: int) -> list[tuple[int, str]]:
    """Which pieces to edit and to what: up to ``max_edits``, split evenly between the sources (seeded
    order), each given the answer of another piece of the same source and kind (so "Paris" becomes
    "Rome", a year another year), never its own answer."""
    rng = np.random.default_rng(seed)
    by_source: dict[str, list[int]] = {}
    for i, p in enumerate(pieces):
        by_source.setdefault(p.source, []).append(i)
    queues = {s: [idx[k] for k in rng.permutation(len(idx))] for s, idx in sorted(by_source.items())}
    order = []
    while any(queues.values()):  # round robin over the sources
        for s in sorted(queues):
            if queues[s]:
                order.append(queues[s].pop(0))
    plan = []
    for i in order:
        if len(plan) == max_edits:
            break
        p = pieces[i]
        answers = sorted({q.answer for q in pieces if q.source == p.source and q.kind == p.kind
                          and q.answer.strip().lower() != p.answer.strip().lower()})
        if answers:
            plan.append((i, answers[int(rng.integers(len(answers)))]))
    return plan


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


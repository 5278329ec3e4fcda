"""GradSim: the cosine between two pieces' gradients of log P(a|q) with respect to one layer's MLP
down-projection weight W [d_out, d_in] (Qin et al., EMNLP 2024; seed 001's coupling stage).

The down-projection computes out_t = W k_t (+ b) at every position t, so a piece's gradient is
grad_i = sum_t g_t k_t^T, with k_t its input (``blocks.L.mlp.hook_post``) and g_t = d log P / d out_t.
The inner product of two pieces' gradients is therefore

    <grad_i, grad_j> = sum_{t in i, s in j} (g_t . g_s) (k_t . k_s),

which ``gradsim_matrix`` computes for all pairs at once, in float64, from the per-position factors that
``piece_gradients`` collects in one batched forward/backward pass over length-sorted chunks, never forming
an N x d_out x d_in stack of gradients. The same pass gives every piece's log P(a|q) and greedy match (the
knowledge check) and the factors at every edited layer, from which ``first_order_change`` predicts what
an edit Delta W does to each piece: sum_layers <grad_W log P, Delta W> = sum_t g_t . (Delta W k_t).
``gradsim_matrix_loop`` is the plain per-piece loop (one backward pass and one full gradient per piece),
kept as the reference the benchmark and the tests compare against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from repro import hooks
from repro.adapters import ModelAdapter
from repro.gradsim.pieces import KnowledgePiece
from repro.gradsim.scoring import CHUNK_TOKENS, PieceBatch, answer_scores


def gradsim_layer(edit_layers: list[int]) -> int:
    """The layer GradSim is measured at: the middle one of the layers MEMIT edits (the lower middle for
    an even count), so coupling is measured where the edits write."""
    return edit_layers[(len(edit_layers) - 1) // 2]


@dataclass
class PieceGradients:
    """Per-position gradient factors of every piece at some layers, and the pieces' scores."""

    logprob: torch.Tensor  # [N] float64, log P(a|q)
    greedy: torch.Tensor  # [N] bool, greedy decoding gives the answer
    rows: torch.Tensor  # [P] the piece each position belongs to
    g: dict[int, torch.Tensor]  # layer -> [P, d_out] d log P / d (down-projection output)
    k: dict[int, torch.Tensor]  # layer -> [P, d_in] the down-projection input
    n: int

    def gradsim(self, layer: int, keep: np.ndarray | None = None) -> np.ndarray:
        """The GradSim matrix over the pieces ``keep`` (indices; default all), float64."""
        keep = np.arange(self.n) if keep is None else np.asarray(keep)
        new_index = torch.full((self.n,), -1, dtype=torch.long)
        new_index[torch.as_tensor(keep)] = torch.arange(len(keep))
        at = new_index[self.rows] >= 0  # positions of kept pieces
        g, k = self.g[layer][at].double(), self.k[layer][at].double()  # [P', d_out], [P', d_in]
        member = torch.zeros(len(keep), int(at.sum()), dtype=torch.float64)  # [N', P']: which piece owns a position
        member[new_index[self.rows[at]], torch.arange(int(at.sum()))] = 1.0
        gram = member @ ((g @ g.T) * (k @ k.T)) @ member.T  # [N', N'] = <grad_i, grad_j>
        return _cosine(gram)


def piece_gradients(adapter: ModelAdapter, batch: PieceBatch, layers: list[int],
                    max_tokens: int = CHUNK_TOKENS) -> PieceGradients:
    """One forward and one backward pass per length-sorted chunk: log P(a|q), greedy match, and (g, k) at
    every layer in ``layers`` over the positions that carry gradient (up to the last one predicting an
    answer token: causality). Blocks below the lowest layer run without autograd."""
    first = min(layers)
    logprob = torch.zeros(batch.n, dtype=torch.float64)
    greedy = torch.zeros(batch.n, dtype=torch.bool)
    gs: dict[int, list] = {layer: [] for layer in layers}
    ks: dict[int, list] = {layer: [] for layer in layers}
    rows = []
    for index in batch.chunks(max_tokens):
        part = batch.rows(index)
        stored: dict[str, torch.Tensor] = {}

        def keep_input(act, name, stored=stored):
            stored[name] = act.detach()

        def keep_output(act, name, stored=stored):  # kept in the graph: a later edited layer's path stays connected
            stored[name] = act

        fns = {hooks.mlp_post(layer): keep_input for layer in layers} | {hooks.mlp_out(layer): keep_output for layer in layers}
        with torch.no_grad():
            hidden = adapter.run_blocks(adapter.embed(part.ids.to(adapter.device)), 0, first)
        with torch.enable_grad(), hooks.hooks(adapter, fns):
            final = adapter.run_blocks(hidden.requires_grad_(True), first)  # a leaf: the outputs above need grad
            lp, match = answer_scores(adapter, part, final)
            # Pieces are independent rows, so the gradient of the sum holds each piece's own gradient.
            grads = torch.autograd.grad(lp.sum(), [stored[hooks.mlp_out(layer)] for layer in layers])
        logprob[index], greedy[index] = lp.detach().double().cpu(), match.cpu()
        last = torch.stack([p[-1] - 1 for p in part.answer_pos])  # [n] last position predicting an answer token
        mask = torch.arange(part.ids.shape[1])[None] <= last[:, None]  # [n, pos]
        rows.append(torch.tensor(index)[:, None].expand_as(mask)[mask])
        on_device = mask.to(adapter.device)
        for layer, grad in zip(layers, grads):  # kept on the CPU: the Gram and the predictions are float64 there
            gs[layer].append(grad[on_device].cpu())
            ks[layer].append(stored[hooks.mlp_post(layer)][on_device].cpu())
    return PieceGradients(logprob, greedy, torch.cat(rows), {la: torch.cat(v) for la, v in gs.items()},
                          {la: torch.cat(v) for la, v in ks.items()}, batch.n)


def gradsim_matrix(adapter: ModelAdapter, batch: PieceBatch, layer: int, max_tokens: int = CHUNK_TOKENS) -> np.ndarray:
    """The N x N GradSim matrix (float64), batched: Gram of gradients from per-position factors."""
    return piece_gradients(adapter, batch, [layer], max_tokens).gradsim(layer)


def first_order_change(grads: PieceGradients, factors: dict[int, tuple[torch.Tensor, torch.Tensor]],
                       keep: np.ndarray | None = None) -> np.ndarray:
    """Predicted Delta log P of every kept piece [N'] for an edit Delta W_l = u_l v_l^T (``factors``:
    layer -> (u [d_out, r], v [d_in, r])): sum over layers and positions of g_t . (Delta W_l k_t), float64."""
    total = torch.zeros(grads.n, dtype=torch.float64)
    for layer, (u, v) in factors.items():
        per_position = ((grads.g[layer].double() @ u.double()) * (grads.k[layer].double() @ v.double())).sum(1)  # [P]
        total.index_add_(0, grads.rows, per_position)
    total = total.numpy()
    return total if keep is None else total[np.asarray(keep)]


def piece_gradient(adapter: ModelAdapter, batch: PieceBatch, row: int, layer: int) -> torch.Tensor:
    """One piece's full gradient of log P(a|q) w.r.t. the down-projection weight, [d_out, d_in]."""
    weight = adapter.mlp_down_proj(layer).weight
    one = batch.rows([row])
    weight.requires_grad_(True)
    try:
        with torch.enable_grad():
            logprob, _ = answer_scores(adapter, one, adapter.run_blocks(adapter.embed(one.ids.to(adapter.device))))
            (grad,) = torch.autograd.grad(logprob.sum(), weight)
    finally:
        weight.requires_grad_(False)
    return adapter.as_down_proj_matrix(layer, grad).cpu()  # storage layout -> [d_out, d_in]


def gradsim_matrix_loop(adapter: ModelAdapter, batch: PieceBatch, layer: int) -> np.ndarray:
    """The same matrix the plain way: N backward passes, N full gradients, then their cosines (float64)."""
    grads = torch.stack([piece_gradient(adapter, batch, r, layer).flatten().double() for r in range(batch.n)])
    return _cosine(grads @ grads.T)


def _cosine(gram: torch.Tensor) -> np.ndarray:
    norm = gram.diagonal().clamp_min(1e-300).sqrt()
    return (gram / norm[:, None] / norm[None, :]).numpy()


def pair_relations(pieces: list[KnowledgePiece]) -> dict[str, np.ndarray]:
    """Boolean N x N matrices: do two pieces share a subject, a relation template, a source; are they
    linked (one's answer is the other's subject: a 2-hop chain; or the two hops of one HotpotQA example)."""

    def same(values) -> np.ndarray:
        v = np.array(values, dtype=object)
        return (v[:, None] == v[None, :]) & np.array([x is not None for x in values])[:, None]

    subjects = [p.subject.strip().lower() for p in pieces]
    answers = [p.answer.strip().lower() for p in pieces]
    hop = np.array([[a == s for s in subjects] for a in answers])  # [i, j]: i's answer is j's subject
    return {
        "linked": hop | hop.T | same([p.chain for p in pieces]),
        "same_subject": same(subjects),
        "same_template": same([p.relation for p in pieces]),
        "same_source": same([p.source for p in pieces]),
    }

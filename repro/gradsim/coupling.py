"""GradSim: the cosine between two pieces' gradients of log P(a|q) with respect to one layer's MLP
down-projection weight W [d_out, d_in] (Qin et al., EMNLP 2024; seed 001's coupling stage).

The down-projection computes out_t = W k_t (+ b) at every position t, so a piece's gradient is
grad_i = sum_t g_t k_t^T, with k_t its input (``blocks.L.mlp.hook_post``) and g_t = d log P / d out_t.
The inner product of two pieces' gradients is therefore

    <grad_i, grad_j> = sum_{t in i, s in j} (g_t . g_s) (k_t . k_s),

which ``gradsim_matrix`` computes for all pairs at once from one batched forward/backward pass, without
ever forming an N x d_out x d_in stack of gradients. ``gradsim_matrix_loop`` is the plain per-piece loop
(one backward pass and one full gradient per piece), kept as the reference the benchmark and the tests
compare against.
"""

from __future__ import annotations

import numpy as np
import torch

from repro import hooks
from repro.adapters import ModelAdapter
from repro.gradsim.pieces import KnowledgePiece
from repro.gradsim.scoring import PieceBatch, answer_scores


def gradsim_layer(edit_layers: list[int]) -> int:
    """The layer GradSim is measured at: the middle one of the layers MEMIT edits (the lower middle for
    an even count), so coupling is measured where the edits write."""
    return edit_layers[(len(edit_layers) - 1) // 2]


def position_factors(adapter: ModelAdapter, batch: PieceBatch, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(g [P, d_out], k [P, d_in], piece [P]) over the positions that carry gradient, from one forward and
    one backward pass: the layer's down-projection input and the gradient of log P(a|q) at its output."""
    stored: dict[str, torch.Tensor] = {}

    def keep_input(act, name):
        stored[name] = act.detach()

    def make_leaf(act, name):  # the output becomes a leaf that the rest of the forward depends on
        stored[name] = act.detach().requires_grad_(True)
        return stored[name]

    post, out = hooks.mlp_post(layer), hooks.mlp_out(layer)
    with torch.enable_grad(), hooks.hooks(adapter, {post: keep_input, out: make_leaf}):
        final = adapter.run_blocks(adapter.embed(batch.ids))
        logprob, _ = answer_scores(adapter, batch, final)
        # Pieces are independent rows, so the gradient of the sum holds each piece's own gradient.
        (grad,) = torch.autograd.grad(logprob.sum(), stored[out])  # [n, pos, d_out]
    # A position carries gradient only up to the last one predicting an answer token (causality).
    last = torch.stack([p[-1] - 1 for p in batch.answer_pos])  # [n]
    mask = torch.arange(batch.ids.shape[1])[None] <= last[:, None]  # [n, pos]
    rows = torch.arange(batch.n)[:, None].expand_as(mask)[mask]
    return grad[mask], stored[post][mask], rows


def gradsim_matrix(adapter: ModelAdapter, batch: PieceBatch, layer: int, chunk: int = 32) -> np.ndarray:
    """The N x N GradSim matrix (float64), batched: Gram of gradients from per-position factors."""
    gs, ks, rows = [], [], []
    for lo in range(0, batch.n, chunk):
        g, k, r = position_factors(adapter, batch.rows(range(lo, min(lo + chunk, batch.n))), layer)
        gs.append(g.double())
        ks.append(k.double())
        rows.append(r + lo)
    g, k, rows = torch.cat(gs), torch.cat(ks), torch.cat(rows)  # [P, d_out], [P, d_in], [P]
    member = torch.zeros(batch.n, len(rows), dtype=torch.float64)  # [N, P]: which piece owns a position
    member[rows, torch.arange(len(rows))] = 1.0
    gram = member @ ((g @ g.T) * (k @ k.T)) @ member.T  # [N, N] = <grad_i, grad_j>
    return _cosine(gram)


def piece_gradient(adapter: ModelAdapter, batch: PieceBatch, row: int, layer: int) -> torch.Tensor:
    """One piece's full gradient of log P(a|q) w.r.t. the down-projection weight, [d_out, d_in]."""
    weight = adapter.mlp_down_proj(layer).weight
    one = batch.rows([row])
    weight.requires_grad_(True)
    try:
        with torch.enable_grad():
            logprob, _ = answer_scores(adapter, one, adapter.run_blocks(adapter.embed(one.ids)))
            (grad,) = torch.autograd.grad(logprob.sum(), weight)
    finally:
        weight.requires_grad_(False)
    return adapter.as_down_proj_matrix(layer, grad)  # storage layout -> [d_out, d_in]


def gradsim_matrix_loop(adapter: ModelAdapter, batch: PieceBatch, layer: int) -> np.ndarray:
    """The same matrix the plain way: N backward passes, N full gradients, then their cosines."""
    grads = torch.stack([piece_gradient(adapter, batch, r, layer).flatten() for r in range(batch.n)]).double()
    return _cosine(grads @ grads.T)


def _cosine(gram: torch.Tensor) -> np.ndarray:
    norm = gram.diagonal().clamp_min(1e-300).sqrt()
    return (gram / norm[:, None] / norm[None, :]).numpy()


def pair_relations(pieces: list[KnowledgePiece]) -> dict[str, np.ndarray]:
    """Boolean N x N matrices: do two pieces share a chain, a subject, a relation template, a source."""

    def same(values) -> np.ndarray:
        v = np.array(values, dtype=object)
        return (v[:, None] == v[None, :]) & np.array([x is not None for x in values])[:, None]

    return {
        "same_chain": same([p.chain for p in pieces]),
        "same_subject": same([p.subject.lower() for p in pieces]),
        "same_template": same([p.relation for p in pieces]),
        "same_source": same([p.source for p in pieces]),
    }

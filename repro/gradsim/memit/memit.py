"""MEMIT's update (``memit_main.execute_memit``), for a batch of independent one-fact edits, and
``applied``, which puts one edit's deltas into the model for the duration of a ``with`` block.

For each edit, layer by layer, ascending, each with the edit's updates of the layers below in place:

    K        = keys at this layer (``compute_ks``)                                  [d_in, n]
    residual = (z - current output of the last edited layer) / (layers left)         [d_out, n]
    Delta W  = residual @ solve(lambda C + K K^T, K)^T            (float64)          [d_out, d_in]

Delta W minimises ||Delta W K - residual||^2 + lambda tr(Delta W C Delta W^T): it writes the residual
at the keys while disturbing the layer's outputs on ordinary text (C = E[k k^T]) as little as possible.
With one fact (n = 1) it is the rank-1 u v^T with u = residual and v = (lambda C + k k^T)^-1 k, and
v . k = s / (1 + s), s = k^T C^-1 k / lambda, is the share of the residual it writes (``written``).
Edits are kept as these factors (a dense Delta W per edit and layer would not fit in memory for many
edits). The batch shares every forward pass (``compute_zs``; ``SubjectRows``) but no arithmetic: each
edit is what MEMIT computes for it alone. ROME is the one-layer case.

Invariant: the model's weights are the same, bit for bit, before and after ``memit_edits`` and after
leaving ``applied`` (a test checks it with ``torch.equal``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from repro.adapters import ModelAdapter
from repro.gradsim.memit.compute_ks import Factors, SubjectRows
from repro.gradsim.memit.compute_z import EditRequest, TargetVector, compute_zs
from repro.gradsim.memit.hparams import MemitHyperParams


@dataclass
class MemitEdit:
    request: EditRequest
    factors: Factors  # layer -> (u [d_out, 1], v [d_in, 1]) float64: Delta W = u v^T
    target: TargetVector
    written: dict[int, float]  # layer -> v . k, the share of that layer's residual the update writes
    seconds: dict[str, float] = field(default_factory=dict)  # this edit's share of the batch: "target", "keys", "solve"

    def deltas(self, dtype: torch.dtype = torch.float32) -> dict[int, torch.Tensor]:
        """layer -> Delta W [d_out, d_in] in ``dtype``."""
        return {layer: (u @ v.T).to(dtype) for layer, (u, v) in self.factors.items()}


def closed_form_update(keys: torch.Tensor, residual: torch.Tensor, cov: torch.Tensor, weight: float) -> torch.Tensor:
    """Delta W = residual @ solve(weight * cov + K K^T, K)^T in float64: keys [d_in, n], residual
    [d_out, n], cov [d_in, d_in] -> [d_out, d_in]."""
    keys, residual, cov = keys.double(), residual.double(), cov.double()
    adjusted = torch.linalg.solve(weight * cov + keys @ keys.T, keys)  # [d_in, n]
    return residual @ adjusted.T


class CovarianceSolve:
    """solve(weight * C + K K^T, K) for many K against one C: (weight * C)^-1 made once from a Cholesky
    factor, then the Woodbury identity (A + K K^T)^-1 K = A^-1 K (I + K^T A^-1 K)^-1, a matrix-vector
    product per edit instead of a fresh O(d^3) solve (and no LAPACK call per edit: a triangular solve for
    one right-hand side is hundreds of times slower with two threads than with one on a busy machine).
    Falls back to the direct solve if C is not numerically positive definite."""

    def __init__(self, cov: torch.Tensor, weight: float):
        self.scaled = weight * cov.double()
        factor, info = torch.linalg.cholesky_ex(self.scaled)
        self.positive = int(info) == 0
        self.inverse = torch.cholesky_inverse(factor) if self.positive else None  # [d_in, d_in]

    def adjusted(self, keys: torch.Tensor) -> torch.Tensor:
        keys = keys.double()  # [d_in, n]
        if not self.positive:
            return torch.linalg.solve(self.scaled + keys @ keys.T, keys)
        a_inv_k = self.inverse @ keys  # [d_in, n]
        return a_inv_k @ torch.linalg.inv(torch.eye(keys.shape[1], dtype=keys.dtype) + keys.T @ a_inv_k)


@contextmanager
def applied(adapter: ModelAdapter, deltas: Mapping[int, torch.Tensor]) -> Iterator[None]:
    """W_l <- W_l + Delta_l for every layer l in ``deltas`` inside the block; the original tensors are
    written back on exit (also on error), so the weights are restored exactly, not by subtraction."""
    originals = {layer: adapter.down_proj_weight(layer).detach().clone() for layer in deltas}
    try:
        for layer, delta in deltas.items():
            original = originals[layer]
            adapter.set_down_proj_weight(layer, original + delta.to(device=original.device, dtype=original.dtype))
        yield
    finally:
        for layer, original in originals.items():
            adapter.set_down_proj_weight(layer, original)


def memit_edits(adapter: ModelAdapter, tokenizer, requests: list[EditRequest], hp: MemitHyperParams,
                contexts: list[list[str]], solvers: Mapping[int, CovarianceSolve]) -> list[MemitEdit]:
    """For every request, the factors of the deltas that make the model continue its prompt with its
    target, each computed as if it were the only edit (the batch only shares forward passes)."""
    start = time.perf_counter()
    targets = compute_zs(adapter, tokenizer, requests, hp, contexts)
    target_s = time.perf_counter() - start
    rows = SubjectRows(adapter, tokenizer, requests, contexts, hp.layers[0])
    factors: list[Factors] = [{} for _ in requests]
    written: list[dict[int, float]] = [{} for _ in requests]
    keys_s = solve_s = 0.0
    for i, layer in enumerate(hp.layers):
        start = time.perf_counter()
        keys, now = rows.keys_and_outputs(layer, hp.z_layer, factors)  # [K, d_in], [K, d_model], on the CPU
        keys_s += time.perf_counter() - start
        start = time.perf_counter()
        for e, target in enumerate(targets):
            residual = ((target.z - now[e]).double() / (len(hp.layers) - i))[:, None]  # [d_out, 1]
            adjusted = solvers[layer].adjusted(keys[e][:, None])  # [d_in, 1]
            factors[e][layer] = (residual, adjusted)
            written[e][layer] = float(adjusted[:, 0] @ keys[e].double())
        solve_s += time.perf_counter() - start
    share = {"target": target_s / len(requests), "keys": keys_s / len(requests), "solve": solve_s / len(requests)}
    return [MemitEdit(r, f, t, w, dict(share)) for r, f, t, w in zip(requests, factors, targets, written)]


def memit_edit(adapter: ModelAdapter, tokenizer, request: EditRequest, hp: MemitHyperParams,
               contexts: list[list[str]], covs: Mapping[int, torch.Tensor]) -> MemitEdit:
    """One request (a batch of one), from the raw second moments."""
    solvers = {layer: CovarianceSolve(covs[layer], hp.mom2_update_weight) for layer in hp.layers}
    return memit_edits(adapter, tokenizer, [request], hp, contexts, solvers)[0]

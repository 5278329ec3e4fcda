"""MEMIT's update (``memit_main.execute_memit``) for one request, and ``applied``, which puts deltas into
the model for the duration of a ``with`` block.

Layer by layer, ascending, each with the updates of the layers below already in place:

    K        = keys at this layer (``compute_ks``)                                  [d_in, n]
    residual = (z - current output of the last edited layer) / (layers left)         [d_out, n]
    Delta W  = residual @ solve(lambda C + K K^T, K)^T            (float64)          [d_out, d_in]

Delta W minimises ||Delta W K - residual||^2 + lambda tr(Delta W C Delta W^T): it writes the residual
at the keys while disturbing the layer's outputs on ordinary text (C = E[k k^T]) as little as possible.
ROME is the one-layer case. Invariant: the model's weights are the same, bit for bit, before and after
``memit_edit`` and after leaving ``applied`` (a test checks it with ``torch.equal``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from repro.adapters import ModelAdapter
from repro.gradsim.memit.compute_ks import compute_ks, current_z
from repro.gradsim.memit.compute_z import EditRequest, TargetVector, compute_z
from repro.gradsim.memit.hparams import MemitHyperParams


@dataclass
class MemitEdit:
    request: EditRequest
    deltas: dict[int, torch.Tensor]  # layer -> Delta W [d_out, d_in] in the weight's dtype
    target: TargetVector
    seconds: dict[str, float] = field(default_factory=dict)  # "target", "keys", "solve"


def closed_form_update(keys: torch.Tensor, residual: torch.Tensor, cov: torch.Tensor, weight: float) -> torch.Tensor:
    """Delta W = residual @ solve(weight * cov + K K^T, K)^T in float64: keys [d_in, n], residual
    [d_out, n], cov [d_in, d_in] -> [d_out, d_in]."""
    keys, residual, cov = keys.double(), residual.double(), cov.double()
    adjusted = torch.linalg.solve(weight * cov + keys @ keys.T, keys)  # [d_in, n]
    return residual @ adjusted.T


@contextmanager
def applied(adapter: ModelAdapter, deltas: Mapping[int, torch.Tensor]) -> Iterator[None]:
    """W_l <- W_l + Delta_l for every layer l in ``deltas`` inside the block; the original tensors are
    written back on exit (also on error), so the weights are restored exactly, not by subtraction."""
    originals = {layer: adapter.down_proj_weight(layer).detach().clone() for layer in deltas}
    try:
        for layer, delta in deltas.items():
            adapter.set_down_proj_weight(layer, originals[layer] + delta.to(originals[layer].dtype))
        yield
    finally:
        for layer, original in originals.items():
            adapter.set_down_proj_weight(layer, original)


def memit_edit(adapter: ModelAdapter, tokenizer, request: EditRequest, hp: MemitHyperParams,
               contexts: list[list[str]], covs: Mapping[int, torch.Tensor]) -> MemitEdit:
    """The deltas that make the model continue ``request.prompt`` with ``request.target_new``."""
    seconds = {"target": 0.0, "keys": 0.0, "solve": 0.0}
    start = time.perf_counter()
    target = compute_z(adapter, tokenizer, request, hp, contexts)
    seconds["target"] = time.perf_counter() - start
    deltas: dict[int, torch.Tensor] = {}
    for i, layer in enumerate(hp.layers):
        start = time.perf_counter()
        with applied(adapter, deltas):  # the layers below, already edited
            keys = compute_ks(adapter, tokenizer, request, layer, contexts)[:, None]  # [d_in, 1]
            now = current_z(adapter, tokenizer, request, hp.z_layer)
        residual = ((target.z - now) / (len(hp.layers) - i))[:, None]  # [d_out, 1]
        seconds["keys"] += time.perf_counter() - start
        start = time.perf_counter()
        update = closed_form_update(keys, residual, covs[layer], hp.mom2_update_weight)
        deltas[layer] = update.to(adapter.down_proj_weight(layer).dtype)
        seconds["solve"] += time.perf_counter() - start
    return MemitEdit(request, deltas, target, seconds)

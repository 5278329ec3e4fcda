"""Collect: one pass per prompt set caches every activation the patching experiments read.

Per layer: the residual stream entering the block, the per-head attention output z, the attention and MLP
outputs; plus every layer's keys/values (so later runs can start mid-sequence) and the final logit diff.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from repro import hooks
from repro.adapters import KVRecorder, ModelAdapter
from repro.ioi.metric import logit_diff


@dataclass
class RunCache:
    resid_pre: list[torch.Tensor]  # per layer [batch, pos, d_model]
    z: list[torch.Tensor]  # per layer [batch, pos, head, d_head]
    attn_out: list[torch.Tensor]  # per layer [batch, pos, d_model]
    mlp_out: list[torch.Tensor]  # per layer [batch, pos, d_model]
    kv: KVRecorder  # per layer keys/values [batch, kv_head, pos, d_head]
    logit_diff: torch.Tensor  # [batch]

    def nbytes(self) -> int:
        tensors = [
            *self.resid_pre,
            *self.z,
            *self.attn_out,
            *self.mlp_out,
            *self.kv.keys.values(),
            *self.kv.values.values(),
        ]
        return sum(t.numel() * t.element_size() for t in tensors)


def collect(adapter: ModelAdapter, ids: torch.Tensor, io: torch.Tensor, s: torch.Tensor) -> RunCache:
    """Run ``ids`` [batch, pos] once and cache all sites of all layers."""
    layers = range(adapter.n_layers)
    names = [
        n
        for layer in layers
        for n in (hooks.resid_pre(layer), hooks.attn_z(layer), hooks.attn_out(layer), hooks.mlp_out(layer))
    ]
    recorder = KVRecorder()
    with torch.no_grad(), hooks.caching(adapter, names) as cache:
        hidden = adapter.embed(ids)
        kwargs = {**adapter.block_kwargs(hidden), adapter.cache_kwarg: recorder}
        final = adapter.run_blocks(hidden, kwargs=kwargs)[:, -1]
        ld = logit_diff(adapter, final, io, s)
    return RunCache(
        resid_pre=[cache[hooks.resid_pre(layer)] for layer in layers],
        z=[cache[hooks.attn_z(layer)] for layer in layers],
        attn_out=[cache[hooks.attn_out(layer)] for layer in layers],
        mlp_out=[cache[hooks.mlp_out(layer)] for layer in layers],
        kv=recorder,
        logit_diff=ld,
    )

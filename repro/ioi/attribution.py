"""Attribution patching: the first-order Taylor estimate of every head's patching effect at once.

metric(corrupted with z_h <- clean z_h) - metric(corrupted) ~= (clean_z_h - corrupted_z_h) . d metric / d z_h,
the gradient taken on the corrupted run (Nanda, "Attribution Patching", 2023). One forward and one backward
pass give all heads, all positions; the error is second order in (clean_z - corrupted_z), so the estimate
is exact where the metric is linear in z and degrades where attention patterns or norms bend it.
"""

from __future__ import annotations

import torch

from repro import hooks
from repro.adapters import ModelAdapter
from repro.ioi.collect import RunCache
from repro.ioi.dataset import PairBatch
from repro.ioi.metric import logit_diff


def z_and_gradients(
    adapter: ModelAdapter, ids: torch.Tensor, io: torch.Tensor, s: torch.Tensor
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """z and d logit_diff / d z at every layer, per prompt: two lists over layers of [batch, pos, head,
    d_head]. Prompts are independent, so the gradient of the batch sum is each prompt's own gradient."""
    names = [hooks.attn_z(layer) for layer in range(adapter.n_layers)]
    with torch.enable_grad(), hooks.caching(adapter, names, detach=False) as cache:
        # The weights are frozen; a leaf that requires grad at the input puts every activation in the graph.
        hidden = adapter.embed(ids).detach().requires_grad_(True)
        final = adapter.run_blocks(hidden)[:, -1]
        metric = logit_diff(adapter, final, io, s).sum()
        grads = torch.autograd.grad(metric, [cache[name] for name in names])
    return [cache[name].detach() for name in names], [g.detach() for g in grads]


def head_attributions(
    adapter: ModelAdapter, batch: PairBatch, clean: RunCache
) -> tuple[torch.Tensor, torch.Tensor]:
    """Estimated patched-minus-corrupted logit diff per head: (all positions, final position only), each
    [layer, head, batch]. Needs only the clean z; the corrupted run is the gradient pass itself."""
    corrupted_z, grads = z_and_gradients(adapter, batch.corrupted, batch.io, batch.s)
    all_pos, final = [], []
    for layer, grad in enumerate(grads):
        per_pos = ((clean.z[layer] - corrupted_z[layer]) * grad).sum(-1)  # [batch, pos, head]
        all_pos.append(per_pos.sum(1).T)  # [head, batch]
        final.append(per_pos[:, -1].T)
    return torch.stack(all_pos), torch.stack(final)

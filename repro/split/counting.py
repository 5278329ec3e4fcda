"""Compute per component: FLOPs from ``torch.utils.flop_counter.FlopCounterMode``, MACs = FLOPs / 2.

The seed's "0.08 vs 0.32 GFLOPS" (LM head 0.23 for [1, 6, 768] x [768, 50257]) are multiply-accumulates:
6 * 768 * 50257 = 0.23 G MACs = 0.46 GFLOP. FlopCounterMode counts 2 FLOPs per multiply-accumulate of
matrix products (mm, addmm, bmm, attention) and nothing for lookups, norms and element-wise ops, so
MACs = FLOPs / 2 exactly and the embeddings count 0, as in the seed.

Attention's own matmuls (QK^T and AV, 2 * s^2 * d MACs per block) are counted separately: the seed's
Bottom "0.08" matches the weight matmuls alone (84.9M MACs at 6 tokens; 85.0M with attention, which
would round to 0.09), as counters that hook only nn.Linear-like layers report.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from repro.split.parts import Part


def _sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    # FlopCounterMode registers only the CUDA attention kernels; on CPU scaled_dot_product_attention runs
    # as _scaled_dot_product_flash_attention_for_cpu, which would count 0 although its QK^T and AV
    # matmuls (2 * s^2 * d MACs per block) matter at long sequences.
    return sdpa_flop_count(query, key, value)


CUSTOM_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops}
# Ops whose FLOPs are attention's activation-by-activation matmuls rather than products with weights.
ATTENTION_OPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu,
    torch.ops.aten._scaled_dot_product_flash_attention,
    torch.ops.aten._scaled_dot_product_efficient_attention,
    torch.ops.aten._scaled_dot_product_cudnn_attention,
    torch.ops.aten._flash_attention_forward,
    torch.ops.aten._efficient_attention_forward,
    torch.ops.aten.bmm,  # eager attention; the blocks have no other batched matmul
}


def count_flops(fn, *args) -> tuple[int, int, object]:
    """(FLOPs, of which attention FLOPs, output) of one call of ``fn(*args)``."""
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOPS) as counter:
        out = fn(*args)
    by_op = counter.get_flop_counts().get("Global", {})
    attention = sum(n for op, n in by_op.items() if op in ATTENTION_OPS)
    return counter.get_total_flops(), attention, out


def component_flops(
    part: Part, x: torch.Tensor, kwargs: dict | None = None
) -> tuple[dict[str, int], dict[str, int], torch.Tensor]:
    """({component: FLOPs}, {component: attention FLOPs}, part output) for one call of ``part`` on ``x``.

    Each component is counted on its own input (the previous component's output).
    """
    kwargs = part.block_kwargs(x.shape[0], x.shape[1]) if kwargs is None else kwargs
    flops, attention = {}, {}
    for component in part.components:
        flops[component.name], attention[component.name], x = count_flops(component.forward, x, kwargs)
    return flops, attention, x


def lm_head_macs(batch: int, seq_len: int, d_model: int, d_vocab: int) -> int:
    """Analytic MACs of the unembedding [batch, seq, d_model] x [d_model, d_vocab] (the seed's 0.23 G at 1 x 6)."""
    return batch * seq_len * d_model * d_vocab

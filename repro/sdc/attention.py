"""Attention with every intermediate exposed: the eager computation, step by step, with a hook site at
each step (``repro.hooks.ATTENTION_SITES``), registered through transformers' ``AttentionInterface``.

The model keeps its own modules (projections, rotary embedding, key/value cache, output projection); only
the function they call for ``softmax(q k^T * scale + mask) v`` is swapped, so the hook sites see exactly the
tensors the model computes with. Transformers 5.24 calls an attention function as
``fn(module, query, key, value, attention_mask, scaling=..., dropout=..., **kwargs)`` with query
[batch, head, q_pos, d_head], key/value [batch, kv_head, k_pos, d_head] (grouped-query models repeat them
inside the function) and an additive float mask [batch, 1, q_pos, k_pos] built by the mask function
registered under the same name (``eager_mask`` here: 0 where allowed, the dtype's minimum elsewhere;
None when nothing is masked, e.g. bidirectional attention without padding). Dropout runs only in training
mode, as in the eager functions of GPT-2, LLaMA and DistilBERT.

With no hook installed the result equals the model's default attention within float rounding
(``tests/test_sdc_attention.py``: GPT-2 and SmolLM2 causal, DistilBERT bidirectional). The softmax runs
in float32 and is cast back to the values' dtype, as LLaMA's eager attention does (GPT-2's eager softmax
runs in the input dtype: identical for float32 models).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from repro.hooks import ATTN_K, ATTN_PATTERN, ATTN_Q, ATTN_SCORES, ATTN_V, attention_site

NAME = "repro_exposed"  # the attn_implementation name it is registered under


def exposed_attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                              attention_mask: torch.Tensor | None, scaling: float | None = None,
                              dropout: float = 0.0, **kwargs):
    """Eager attention with the sites q, k, v, attn_scores, pattern; returns (out [b, q, h, d], pattern)."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    query = attention_site(module, ATTN_Q, query)  # [b, h, q, d]
    key = attention_site(module, ATTN_K, key)  # [b, kv_h, k, d]
    value = attention_site(module, ATTN_V, value)
    groups = query.shape[1] // key.shape[1]  # grouped-query attention: each kv head serves `groups` heads
    keys = key.repeat_interleave(groups, dim=1) if groups > 1 else key  # [b, h, k, d]
    values = value.repeat_interleave(groups, dim=1) if groups > 1 else value
    scores = torch.matmul(query, keys.transpose(-1, -2)) * scaling  # [b, h, q, k]
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # True = attend
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask[..., : keys.shape[-2]]
    elif getattr(module, "is_causal", False) and query.shape[2] > 1:
        causal = torch.ones(query.shape[2], keys.shape[2], dtype=torch.bool, device=query.device)
        causal = causal.tril(keys.shape[2] - query.shape[2])
        scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
    scores = attention_site(module, ATTN_SCORES, scores)
    pattern = torch.softmax(scores, dim=-1, dtype=torch.float32).to(values.dtype)
    pattern = attention_site(module, ATTN_PATTERN, pattern)
    weights = nn.functional.dropout(pattern, p=dropout, training=module.training)
    out = torch.matmul(weights, values).transpose(1, 2).contiguous()  # [b, q, h, d]
    return out, pattern


def register() -> str:
    """Register the function and its mask maker under ``NAME`` (idempotent); returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(NAME, exposed_attention_forward)
    AttentionMaskInterface.register(NAME, eager_mask)
    return NAME


@contextmanager
def exposed_attention(model: nn.Module) -> Iterator[None]:
    """Run ``model`` with the exposed attention inside the ``with`` block; its previous implementation is
    restored afterwards (models are shared within a process, see ``repro.models.load_model``)."""
    previous = model.config._attn_implementation
    if previous == NAME:  # nested use
        yield
        return
    model.set_attn_implementation(register())
    try:
        yield
    finally:
        model.set_attn_implementation(previous)

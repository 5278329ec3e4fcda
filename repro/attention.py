"""Attention with every intermediate exposed: the eager computation, step by step, with a slot at each step
where the hook mechanism of ``repro.hooks`` reads or replaces the tensor, registered through transformers'
``AttentionInterface``. This module is a leaf (torch and transformers only): ``repro.hooks`` names the
sites, installs the functions and switches a model to this attention; nothing here imports it back.

The model keeps its own modules (projections, rotary embedding, key/value cache, output projection); only
the function they call for ``softmax(q k^T * scale + mask) v`` is swapped, so the slots see exactly the
tensors the model computes with. Transformers 5.24 calls an attention function as
``fn(module, query, key, value, attention_mask, scaling=..., dropout=..., **kwargs)`` with query
[batch, head, q_pos, d_head], key/value [batch, kv_head, k_pos, d_head] (grouped-query models repeat them
inside the function), ``scaling`` the module's own (``module.scaling``: GPT-2 divides it by the layer number
when ``scale_attn_by_inverse_layer_idx`` is set) and an additive float mask [batch, 1, q_pos, k_pos] built by
the mask function registered under the same name (``eager_mask`` here: 0 where allowed, the dtype's minimum
elsewhere; None when nothing is masked, e.g. bidirectional attention without padding). Dropout runs only in
training mode, as in the eager functions of GPT-2, LLaMA and DistilBERT.

Slots, in the order the computation reaches them (layouts as the model holds them):

- ``q``, ``k``, ``v``: [batch, head | kv_head, pos, d_head]
- ``mask``: which keys each query may see, True = visible, [batch | 1, 1, q_pos, k_pos]; read-only, and built
  only when something reads it (a row with no visible key is padding: its output is never used)
- ``scores``: scaled scores plus the additive mask [batch, head, q_pos, k_pos]
- ``pattern``: softmax weights [batch, head, q_pos, k_pos]
- ``z_checksum``: the ABFT checksum column of the output, weights @ (values @ 1), [batch, head, q_pos], made
  in the same matmul as the output (the values carry an extra column of their row sums, as ATTNChecker
  encodes its operands), and only while something reads it

With no function installed the result equals the model's default attention within float rounding
(``tests/test_sdc.py::test_exposed_attention_reproduces_the_logits_toy`` and ``..._real``: GPT-2 and
SmolLM2, causal; ``test_exposed_attention_bidirectional_distilbert``: DistilBERT with and without padding).
The softmax runs in float32 and is cast back to the values' dtype, as LLaMA's eager attention does (GPT-2's
eager softmax runs in the input dtype: identical for float32 models).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

NAME = "repro_exposed"  # the attn_implementation name it is registered under
SLOTS = ("q", "k", "v", "mask", "scores", "pattern", "z_checksum")
HOOK_TABLE = "_repro_attention_hooks"  # attribute of an attention module: {slot: [fn(tensor) -> tensor | None]}

SlotFn = Callable[[torch.Tensor], torch.Tensor | None]


def _table(module: nn.Module) -> dict[str, list[SlotFn]]:
    return getattr(module, HOOK_TABLE, None) or {}


def _slot(table: dict[str, list[SlotFn]], slot: str, act: torch.Tensor) -> torch.Tensor:
    for fn in table.get(slot, ()):
        new = fn(act)
        if new is not None:
            act = new
    return act


# The model passes one mask tensor to every layer of a forward pass: its boolean form is made once, so that
# whoever reads the mask slot sees the same tensor at every layer (and may reuse what it derived from it).
# (Keyed by id with a weak reference: tensors compare elementwise, so they cannot key a WeakKeyDictionary.)
_VISIBLE: dict[int, tuple[weakref.ref, torch.Tensor]] = {}


def visible_keys(attention_mask: torch.Tensor | None, n_q: int, n_k: int, *, causal: bool,
                 device: torch.device) -> torch.Tensor:
    """The mask as booleans, True = visible: [batch | 1, 1, n_q, n_k]. A float mask is additive (0 allowed,
    the dtype's minimum, or -inf after fp16 overflow, elsewhere): an entry is hidden when it is below half
    of its own dtype's minimum."""
    if attention_mask is None:
        if not causal or n_q == 1:
            return torch.ones(1, 1, n_q, n_k, dtype=torch.bool, device=device)
        return torch.ones(n_q, n_k, dtype=torch.bool, device=device).tril(n_k - n_q)[None, None]
    ref, known = _VISIBLE.get(id(attention_mask), (None, None))
    if ref is not None and ref() is attention_mask and known.shape[-1] == n_k:
        return known
    mask = attention_mask[..., :n_k]
    visible = mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2
    key = id(attention_mask)
    _VISIBLE[key] = (weakref.ref(attention_mask), visible)
    weakref.finalize(attention_mask, _VISIBLE.pop, key, None)
    return visible


def exposed_attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                              attention_mask: torch.Tensor | None, scaling: float | None = None,
                              dropout: float = 0.0, **kwargs):
    """Eager attention with the slots above; returns (out [b, q, h, d], pattern)."""
    table = _table(module)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    query = _slot(table, "q", query)  # [b, h, q, d]
    key = _slot(table, "k", key)  # [b, kv_h, k, d]
    value = _slot(table, "v", value)
    groups = query.shape[1] // key.shape[1]  # grouped-query attention: each kv head serves `groups` heads
    keys = key.repeat_interleave(groups, dim=1) if groups > 1 else key  # [b, h, k, d]
    values = value.repeat_interleave(groups, dim=1) if groups > 1 else value
    causal = getattr(module, "is_causal", False)
    if "mask" in table:
        _slot(table, "mask", visible_keys(attention_mask, query.shape[2], keys.shape[2], causal=causal,
                                          device=query.device))
    scores = torch.matmul(query, keys.transpose(-1, -2)) * scaling  # [b, h, q, k]
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # True = attend
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask[..., : keys.shape[-2]]
    elif causal and query.shape[2] > 1:
        hidden = ~torch.ones(query.shape[2], keys.shape[2], dtype=torch.bool, device=query.device).tril(
            keys.shape[2] - query.shape[2])
        scores = scores.masked_fill(hidden, torch.finfo(scores.dtype).min)
    scores = _slot(table, "scores", scores)
    pattern = torch.softmax(scores, dim=-1, dtype=torch.float32).to(values.dtype)
    pattern = _slot(table, "pattern", pattern)
    weights = nn.functional.dropout(pattern, p=dropout, training=module.training)
    if "z_checksum" in table:  # ABFT: one matmul gives the output and its checksum column
        extended = torch.cat([values, values.sum(dim=-1, keepdim=True)], dim=-1)  # [b, h, k, d + 1]
        both = torch.matmul(weights, extended)
        out = both[..., :-1]
        _slot(table, "z_checksum", both[..., -1])
    else:
        out = torch.matmul(weights, values)  # [b, h, q, d]
    return out.transpose(1, 2).contiguous(), pattern  # [b, q, h, d]


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

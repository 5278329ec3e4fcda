"""Activation sites, named once, and the one mechanism to read or overwrite them.

Names follow TransformerLens, so a reader who knows its IOI notebooks can map every cache key and patch
target here one to one:

- ``blocks.{L}.hook_resid_pre``  residual stream entering block L          [batch, pos, d_model]
- ``blocks.{L}.attn.hook_z``     per-head attention output before W_O      [batch, pos, head, d_head]
- ``blocks.{L}.hook_attn_out``   attention output after W_O (and bias)     [batch, pos, d_model]
- ``blocks.{L}.mlp.hook_post``   MLP hidden activation: the down-projection's input  [batch, pos, d_mlp]
- ``blocks.{L}.hook_mlp_out``    MLP output                                [batch, pos, d_model]
- ``blocks.{L}.hook_resid_post`` residual stream leaving block L           [batch, pos, d_model]

Inside the attention computation (the exposed attention of ``repro.attention``, switched on for the
``with`` block whenever one of these is hooked; the model's logits are unchanged by the switch):

- ``blocks.{L}.attn.hook_q``           queries (after rotary embedding)        [batch, pos, head, d_head]
- ``blocks.{L}.attn.hook_k``           keys (before GQA repetition)            [batch, pos, kv_head, d_head]
- ``blocks.{L}.attn.hook_v``           values (before GQA repetition)          [batch, pos, kv_head, d_head]
- ``blocks.{L}.attn.hook_mask``        visible keys, True = attend (read-only) [batch | 1, 1, query_pos, key_pos]
- ``blocks.{L}.attn.hook_attn_scores`` scaled scores plus the additive mask    [batch, head, query_pos, key_pos]
- ``blocks.{L}.attn.hook_pattern``     softmax weights                         [batch, head, query_pos, key_pos]
- ``blocks.{L}.attn.hook_z_checksum``  pattern @ (v @ 1), from z's own matmul  [batch, pos, head]

``hook_z`` is the attention function's output as the output projection receives it, so it closes the chain.

Every site is a PyTorch forward (pre-)hook on a module the adapter names, so it works for any model the
adapter supports, whether the model is run whole (``model(ids)``) or block by block (``run_blocks``).
A hook function ``fn(activation, name)`` sees the activation in the shape above; returning a tensor of
that shape replaces the activation, returning None leaves it alone. ``hooks`` installs any set of them for
the duration of a ``with`` block; ``caching`` and ``patching`` are the two uses everything else needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch

from repro.adapters import ModelAdapter
from repro.attention import HOOK_TABLE, exposed_attention

RESID_PRE = "hook_resid_pre"
ATTN_Z = "attn.hook_z"
ATTN_OUT = "hook_attn_out"
MLP_OUT = "hook_mlp_out"
RESID_POST = "hook_resid_post"
MLP_POST = "mlp.hook_post"
SITES = (RESID_PRE, ATTN_Z, ATTN_OUT, MLP_OUT, RESID_POST, MLP_POST)
ATTN_Q = "attn.hook_q"
ATTN_K = "attn.hook_k"
ATTN_V = "attn.hook_v"
ATTN_SCORES = "attn.hook_attn_scores"
ATTN_PATTERN = "attn.hook_pattern"
ATTN_MASK = "attn.hook_mask"
ATTN_Z_CHECKSUM = "attn.hook_z_checksum"
# Called from inside attention (repro.attention), in the order the computation reaches them.
ATTENTION_SITES = (ATTN_Q, ATTN_K, ATTN_V, ATTN_MASK, ATTN_SCORES, ATTN_PATTERN, ATTN_Z_CHECKSUM)
ALL_SITES = SITES + ATTENTION_SITES

_NAME = re.compile(r"^blocks\.(\d+)\.(" + "|".join(re.escape(s) for s in ALL_SITES) + r")$")

HookFn = Callable[[torch.Tensor, str], torch.Tensor | None]


def hook_name(site: str, layer: int) -> str:
    """``hook_name(ATTN_Z, 9)`` -> ``'blocks.9.attn.hook_z'``."""
    if site not in ALL_SITES:
        raise ValueError(f"Unknown activation site {site!r}; valid sites: {', '.join(ALL_SITES)}.")
    return f"blocks.{layer}.{site}"


def resid_pre(layer: int) -> str:
    return hook_name(RESID_PRE, layer)


def attn_z(layer: int) -> str:
    return hook_name(ATTN_Z, layer)


def attn_out(layer: int) -> str:
    return hook_name(ATTN_OUT, layer)


def mlp_out(layer: int) -> str:
    return hook_name(MLP_OUT, layer)


def resid_post(layer: int) -> str:
    return hook_name(RESID_POST, layer)


def attn_q(layer: int) -> str:
    return hook_name(ATTN_Q, layer)


def attn_k(layer: int) -> str:
    return hook_name(ATTN_K, layer)


def attn_v(layer: int) -> str:
    return hook_name(ATTN_V, layer)


def attn_scores(layer: int) -> str:
    return hook_name(ATTN_SCORES, layer)


def attn_pattern(layer: int) -> str:
    return hook_name(ATTN_PATTERN, layer)


def mlp_post(layer: int) -> str:
    """The MLP's hidden activation, i.e. the input of its down-projection (MEMIT's keys)."""
    return hook_name(MLP_POST, layer)


def parse_hook_name(name: str) -> tuple[str, int]:
    """``'blocks.9.attn.hook_z'`` -> ``(ATTN_Z, 9)``; a clear error for anything else."""
    match = _NAME.match(name)
    if match is None:
        raise ValueError(
            f"Bad hook name {name!r}: expected 'blocks.<layer>.<site>' with site one of {', '.join(ALL_SITES)} "
            f"(build names with repro.hooks.hook_name)."
        )
    return match.group(2), int(match.group(1))


@dataclass(frozen=True)
class _Site:
    """Where a site lives and how its activation is presented to hook functions."""

    module: torch.nn.Module
    pre: bool  # True: the activation is the module's first input; False: its (first) output
    split_heads: bool  # present [b, p, h*d] as [b, p, h, d]


def _check_layer(adapter: ModelAdapter, name: str, layer: int) -> None:
    if not 0 <= layer < adapter.n_layers:
        raise ValueError(f"Hook {name!r}: layer {layer} is outside 0..{adapter.n_layers - 1} for this model.")


def _site(adapter: ModelAdapter, name: str) -> _Site:
    site, layer = parse_hook_name(name)
    _check_layer(adapter, name, layer)
    if site == RESID_PRE:
        return _Site(adapter.blocks[layer], pre=True, split_heads=False)
    if site == ATTN_Z:
        # The output projection's input is the concatenation of the heads' outputs, head-major, for both
        # GPT-2 (c_proj) and LLaMA (o_proj, after GQA's key/value repetition), so a view splits it exactly.
        return _Site(adapter.attn_out_proj(layer), pre=True, split_heads=True)
    if site == ATTN_OUT:
        return _Site(adapter.attention(layer), pre=False, split_heads=False)
    if site == MLP_OUT:
        return _Site(adapter.mlp(layer), pre=False, split_heads=False)
    if site == MLP_POST:
        return _Site(adapter.mlp_down_proj(layer), pre=True, split_heads=False)
    return _Site(adapter.blocks[layer], pre=False, split_heads=False)


def _call(fn: HookFn, name: str, act: torch.Tensor, split: tuple[int, int] | None) -> torch.Tensor | None:
    shown = act.view(*act.shape[:-1], *split) if split else act  # [b, p, h*d] -> [b, p, h, d]
    new = fn(shown, name)
    if new is None:
        return None
    if new.shape != shown.shape:
        raise ValueError(
            f"Hook on {name!r} returned shape {tuple(new.shape)}, expected {tuple(shown.shape)}."
        )
    return new.reshape(act.shape) if split else new


# Sites inside attention are not module boundaries: the exposed attention function runs the functions its
# module holds for each slot (repro.attention); here each hook function is wrapped to see the site's layout.
_SLOTS = {ATTN_Q: "q", ATTN_K: "k", ATTN_V: "v", ATTN_MASK: "mask", ATTN_SCORES: "scores",
          ATTN_PATTERN: "pattern", ATTN_Z_CHECKSUM: "z_checksum"}
_TRANSPOSED = (ATTN_Q, ATTN_K, ATTN_V, ATTN_Z_CHECKSUM)  # [b, h, p, ...] in the model, [b, p, h, ...] here


def _slot_fn(site: str, name: str, fn: HookFn):
    def run(act: torch.Tensor) -> torch.Tensor | None:
        shown = act.transpose(1, 2) if site in _TRANSPOSED else act  # a view
        new = fn(shown, name)
        if new is None:
            return None
        if site == ATTN_MASK:
            raise ValueError(f"Hook on {name!r} returned a tensor: the mask site is read-only.")
        if new.shape != shown.shape:
            raise ValueError(f"Hook on {name!r} returned shape {tuple(new.shape)}, expected {tuple(shown.shape)}.")
        return new.transpose(1, 2) if site in _TRANSPOSED else new

    return run


@contextmanager
def _attention_hook(adapter: ModelAdapter, layer: int, site: str, name: str, fn: HookFn) -> Iterator[None]:
    module = adapter.attention(layer)
    table = module.__dict__.setdefault(HOOK_TABLE, {})
    slot, entry = _SLOTS[site], _slot_fn(site, name, fn)
    table.setdefault(slot, []).append(entry)
    try:
        yield
    finally:
        table[slot].remove(entry)
        if not table[slot]:
            del table[slot]


@contextmanager
def hooks(adapter: ModelAdapter, fns: Mapping[str, HookFn]) -> Iterator[None]:
    """Install ``{hook name: fn}`` for the duration of the ``with`` block (removed even on error)."""
    with ExitStack() as stack:
        attention = [(name, *parse_hook_name(name)) for name in fns if parse_hook_name(name)[0] in ATTENTION_SITES]
        if attention:
            stack.enter_context(exposed_attention(adapter.model))
        for name, site, layer in attention:
            _check_layer(adapter, name, layer)
            stack.enter_context(_attention_hook(adapter, layer, site, name, fns[name]))
        with _module_hooks(adapter, {n: f for n, f in fns.items() if parse_hook_name(n)[0] in SITES}):
            yield


@contextmanager
def _module_hooks(adapter: ModelAdapter, fns: Mapping[str, HookFn]) -> Iterator[None]:
    handles = []
    try:
        for name, fn in fns.items():
            site = _site(adapter, name)
            split = (adapter.n_heads, adapter.d_head) if site.split_heads else None
            if site.pre:
                handles.append(
                    site.module.register_forward_pre_hook(_pre_hook(fn, name, split), with_kwargs=True)
                )
            else:
                handles.append(site.module.register_forward_hook(_post_hook(fn, name, split)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _pre_hook(fn: HookFn, name: str, split):
    def hook(module, args, kwargs):
        # Blocks are called with the residual positionally (model forward, run_blocks) or by keyword.
        if args:
            new = _call(fn, name, args[0], split)
            return None if new is None else ((new, *args[1:]), kwargs)
        new = _call(fn, name, kwargs["hidden_states"], split)
        return None if new is None else (args, {**kwargs, "hidden_states": new})

    return hook


def _post_hook(fn: HookFn, name: str, split):
    def hook(module, args, output):
        # Attention modules return (output, weights); blocks and MLPs a tensor (older blocks a tuple).
        act = output[0] if isinstance(output, tuple) else output
        new = _call(fn, name, act, split)
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return hook


@contextmanager
def caching(
    adapter: ModelAdapter, names: list[str], detach: bool = True
) -> Iterator[dict[str, torch.Tensor]]:
    """Record activations by name: ``with caching(a, [attn_z(3)]) as cache: a.forward(ids)``.

    ``detach=False`` keeps them in the autograd graph (the activation is routed through the cached tensor,
    so ``torch.autograd.grad(metric, cache[name])`` is the gradient with respect to that site).
    """
    cache: dict[str, torch.Tensor] = {}

    def store(act: torch.Tensor, name: str) -> torch.Tensor | None:
        if detach:
            cache[name] = act.detach().clone()  # clone: the view would alias a buffer the model may reuse
            return None
        cache[name] = act
        return act  # returning it makes the downstream computation depend on this very tensor

    with hooks(adapter, {name: store for name in names}):
        yield cache


Replacement = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


@contextmanager
def patching(adapter: ModelAdapter, replacements: Mapping[str, Replacement]) -> Iterator[None]:
    """Overwrite activations: ``{name: tensor}`` substitutes the tensor (same shape as the site),
    ``{name: fn}`` substitutes ``fn(activation)``."""

    def make(name, value) -> HookFn:
        if callable(value):
            return lambda act, _name: value(act)
        return lambda act, _name: value.to(dtype=act.dtype, device=act.device).expand_as(act)

    with hooks(adapter, {name: make(name, value) for name, value in replacements.items()}):
        yield

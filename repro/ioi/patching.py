"""Patch: put clean activations into the corrupted run and measure how much logit diff comes back.

Exact patching here does only the work that changes:

- A patch at layer l cannot change anything before block l, so each run starts at block l from the cached
  corrupted residual stream (``RunCache.resid_pre[l]``), not from the embeddings.
- Causal attention means a position's activations depend only on the tokens up to it. Clean and corrupted
  prompts share their first ``P`` tokens (``PairBatch.first_difference``; for the S2 swap, everything
  before S2), so there clean and corrupted activations are identical and patching is a no-op; a patch at
  position p leaves positions < p untouched. Runs therefore recompute only the positions from P (or p)
  on, reading the untouched prefix's keys/values from the corrupted run (``PrefixKV``). Final-position
  patching is the case P = pos - 1: one position is recomputed per layer.
- The heads of a layer are patched in one run, stacked along the batch: [head * batch, pos, d_model],
  and the runs starting at different layers share one pass over the blocks (``run_staircase``).
- The metric needs two logits, so only the final position is normed and dotted with two unembedding rows.

``naive_head_patched_ld`` is the baseline this is checked against: one full model forward with the full LM
head per head (what TransformerLens's per-head patching does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from repro import hooks
from repro.adapters import ModelAdapter, PrefixKV
from repro.ioi.collect import RunCache
from repro.ioi.dataset import PairBatch
from repro.ioi.metric import logit_diff, logit_diff_from_logits


@dataclass
class Entry:
    """Rows that join a staircase run at one layer, and the patches applied to them there."""

    hidden: torch.Tensor  # [rows, pos', d_model]: the residual stream entering that layer
    patches: dict[str, torch.Tensor | Callable[[torch.Tensor], torch.Tensor]] = field(default_factory=dict)
    # ^ sites of that layer -> the value for this entry's rows, or a function of their activation


def run_staircase(
    adapter: ModelAdapter, entries: dict[int, Entry], prefix: PrefixKV, io: torch.Tensor, s: torch.Tensor
) -> dict[int, torch.Tensor]:
    """Run patch experiments that start at different layers in one pass over the blocks.

    Entry ``entries[l]`` joins the batch at block l (its patches apply to its own rows only) and runs to
    the end with everyone who joined earlier. Each block then runs once, on all the rows that need it,
    instead of once per starting layer: on a CPU, small batches are bound by reading the weights, so one
    big batch per block is several times faster than 30 small ones for the same arithmetic. The rows of
    an entry are a whole number of copies of the prompts ([copy * batch, ...]); ``io``/``s`` [batch] are
    tiled to match. Returns each entry's final-position logit diff [rows].
    """
    hidden, spans, kwargs = None, {}, None
    for layer in range(min(entries), adapter.n_layers):
        fns = {}
        if layer in entries:
            entry = entries[layer]
            first = 0 if hidden is None else hidden.shape[0]
            spans[layer] = (first, first + entry.hidden.shape[0])
            hidden = entry.hidden if hidden is None else torch.cat([hidden, entry.hidden])
            for name, fn in entry.patches.items():
                if hooks.parse_hook_name(name)[1] != layer:
                    raise ValueError(
                        f"An entry joining at layer {layer} can only patch that layer, not {name!r}."
                    )
                fns[name] = _on_rows_from(first, fn)
        kwargs = kwargs or adapter.suffix_kwargs(hidden, prefix)  # shared: it depends on positions, not batch
        with hooks.patching(adapter, fns):
            hidden = adapter.run_blocks(hidden, layer, layer + 1, kwargs)
    final = hidden[:, -1]  # [rows, d_model]
    out = {}
    for layer, (first, last) in spans.items():
        copies = (last - first) // len(io)
        out[layer] = logit_diff(adapter, final[first:last], io.repeat(copies), s.repeat(copies))
    return out


def _on_rows_from(first: int, patch):
    # The newest entry's rows are the last ones: leave the rows of earlier entries as they are.
    if callable(patch):
        return lambda act: torch.cat([act[:first], patch(act[first:])])
    return lambda act: torch.cat([act[:first], patch.expand_as(act[first:])])


def head_patched_ld(
    adapter: ModelAdapter,
    batch: PairBatch,
    clean: RunCache,
    corrupted: RunCache,
    final_only: bool,
    progress: bool = False,
) -> torch.Tensor:
    """Logit diff with each head's clean z patched in, over all positions or the final one: [layer, head, batch]."""
    n_heads, size = adapter.n_heads, batch.size
    start = batch.n_pos - 1 if final_only else min(batch.first_difference(), batch.n_pos - 1)
    # copy v of the prompts patches head v: mask [copy, 1, 1, head, 1]
    which = torch.eye(n_heads, dtype=torch.bool, device=adapter.device)[:, None, None, :, None]
    entries = {}
    for layer in range(adapter.n_layers):
        clean_z = clean.z[layer][:, start:]  # [batch, pos', head, d_head]

        def patch(z, clean_z=clean_z):  # z: [copy * batch, pos', head, d_head]
            z = z.view(n_heads, size, *z.shape[1:])
            return torch.where(which, clean_z[None], z).flatten(0, 1)

        hidden = corrupted.resid_pre[layer][:, start:].repeat(n_heads, 1, 1)  # [copy * batch, pos', d_model]
        entries[layer] = Entry(hidden, {hooks.attn_z(layer): patch})
    with torch.no_grad():
        out = run_staircase(adapter, entries, PrefixKV(corrupted.kv, start), batch.io, batch.s)
    return torch.stack([out[layer].view(n_heads, size) for layer in range(adapter.n_layers)])


def layer_patched_ld(
    adapter: ModelAdapter, batch: PairBatch, clean: RunCache, corrupted: RunCache, site: str
) -> torch.Tensor:
    """Logit diff with a whole attention (``hooks.ATTN_OUT``) or MLP (``hooks.MLP_OUT``) output patched,
    all positions: [layer, batch]."""
    cached = {hooks.ATTN_OUT: clean.attn_out, hooks.MLP_OUT: clean.mlp_out}[site]
    start = min(batch.first_difference(), batch.n_pos - 1)
    entries = {
        layer: Entry(
            corrupted.resid_pre[layer][:, start:], {hooks.hook_name(site, layer): cached[layer][:, start:]}
        )
        for layer in range(adapter.n_layers)
    }
    with torch.no_grad():
        out = run_staircase(adapter, entries, PrefixKV(corrupted.kv, start), batch.io, batch.s)
    return torch.stack([out[layer] for layer in range(adapter.n_layers)])


def resid_patched_ld(
    adapter: ModelAdapter, batch: PairBatch, clean: RunCache, corrupted: RunCache, progress: bool = False
) -> torch.Tensor:
    """Logit diff with the residual stream entering layer l at position p patched: [layer, pos, batch].
    Positions before the first difference are identical in both runs, so their patched value is the
    corrupted logit diff itself, exactly."""
    out = corrupted.logit_diff.expand(adapter.n_layers, batch.n_pos, batch.size).clone()
    with torch.no_grad():
        for pos in tqdm(
            range(batch.first_difference(), batch.n_pos), desc="residual", disable=not progress, leave=False
        ):
            entries = {}
            for layer in range(adapter.n_layers):
                hidden = corrupted.resid_pre[layer][:, pos:].clone()  # [batch, pos', d_model]
                hidden[:, 0] = clean.resid_pre[layer][:, pos]
                entries[layer] = Entry(hidden)
            ld = run_staircase(adapter, entries, PrefixKV(corrupted.kv, pos), batch.io, batch.s)
            for layer, value in ld.items():
                out[layer, pos] = value
    return out


def naive_head_patched_ld(
    adapter: ModelAdapter,
    batch: PairBatch,
    clean: RunCache,
    layers: list[int] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Baseline: a full forward of the corrupted prompts, with the full LM head, per head: [layer, head,
    batch]; only ``layers`` (default all) are patched, the others are NaN."""
    out = torch.full((adapter.n_layers, adapter.n_heads, batch.size), float("nan"))
    with torch.no_grad():
        for layer in tqdm(
            range(adapter.n_layers) if layers is None else layers,
            desc="naive heads",
            disable=not progress,
            leave=False,
        ):
            for head in range(adapter.n_heads):

                def patch(z, layer=layer, head=head):  # [batch, pos, head, d_head]
                    z = z.clone()
                    z[:, :, head] = clean.z[layer][:, :, head]
                    return z

                with hooks.patching(adapter, {hooks.attn_z(layer): patch}):
                    logits = adapter.model(batch.corrupted).logits  # [batch, pos, d_vocab]
                out[layer, head] = logit_diff_from_logits(logits, batch.io, batch.s)
    return out

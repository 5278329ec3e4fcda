"""Bottom and Top: a causal LM cut into two runnable parts, each an ordered list of named components.

Seed 002 splits GPT-2 into Bottom = token embedding + position embedding + blocks 0, 1 and Top = blocks
L-2, L-1 + final layer norm + LM head. The cut is built through ``ModelAdapter`` only, so the same code
cuts a LLaMA-family model (which has no position embedding: rotary positions live inside the blocks).

Component names are defined here once and used everywhere (parameter tables, MAC tables, timing
breakdowns, plot labels): ``token embedding``, ``position embedding``, ``block {i}``, ``final norm``,
``lm head``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from repro.adapters import ModelAdapter

TOKEN_EMBEDDING = "token embedding"
POSITION_EMBEDDING = "position embedding"
FINAL_NORM = "final norm"
LM_HEAD = "lm head"
BLOCKS = "blocks"  # the group name of all ``block {i}`` components, as the seed tabulates them


def block_name(layer: int) -> str:
    return f"block {layer}"


@dataclass(frozen=True)
class Component:
    name: str  # e.g. "block 10"
    group: str  # e.g. "blocks"; equals ``name`` except for blocks
    module: nn.Module  # owns the component's parameters
    forward: Callable[[torch.Tensor, dict], torch.Tensor]  # (input, block kwargs) -> output

    def n_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


@dataclass(frozen=True)
class Part:
    """An ordered stack of components: ``part(x)`` runs them in order (Bottom: ids -> hidden; Top: hidden -> logits)."""

    name: str  # "bottom" | "top"
    components: tuple[Component, ...]
    adapter: ModelAdapter

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components)

    def block_kwargs(self, batch: int, n_pos: int) -> dict:
        """The causal mask (and rotary tables for LLaMA) for a [batch, n_pos] input.

        They depend only on the shape, so timing builds them once per shape outside the timed calls, as a
        serving system caches them; ``__call__`` builds them when not given.
        """
        weight = self.adapter.unembed.weight
        like = torch.empty(batch, n_pos, self.adapter.d_model, dtype=weight.dtype, device=weight.device)
        return self.adapter.block_kwargs(like)

    def __call__(self, x: torch.Tensor, kwargs: dict | None = None) -> torch.Tensor:
        kwargs = self.block_kwargs(x.shape[0], x.shape[1]) if kwargs is None else kwargs
        for component in self.components:
            x = component.forward(x, kwargs)
        return x


def _add_positions(position_embedding: nn.Embedding):
    def forward(hidden: torch.Tensor, kwargs: dict) -> torch.Tensor:
        # Same arithmetic as ModelAdapter.embed, split off so the lookup is timed as its own component.
        positions = torch.arange(hidden.shape[1], device=hidden.device)
        return hidden + position_embedding(positions)

    return forward


def _run_block(adapter: ModelAdapter, layer: int):
    return lambda hidden, kwargs: adapter.run_blocks(hidden, layer, layer + 1, kwargs)


def split_parts(adapter: ModelAdapter, cut: int = 2) -> tuple[Part, Part]:
    """(Bottom, Top): the first ``cut`` and the last ``cut`` blocks with the embeddings and the head, seed 002's split.

    The blocks in between belong to neither part (in split learning they run elsewhere); with
    ``2 * cut == n_layers`` Bottom then Top is the whole model.
    """
    n_layers = adapter.n_layers
    if cut < 1 or 2 * cut > n_layers:
        raise ValueError(
            f"cut={cut} blocks per part does not fit a {n_layers}-layer model: Bottom and Top need "
            f"1 <= cut <= n_layers // 2 = {n_layers // 2}; choose a cut in that range."
        )
    bottom = [
        Component(
            TOKEN_EMBEDDING,
            TOKEN_EMBEDDING,
            adapter.token_embedding,
            lambda ids, kw: adapter.token_embedding(ids),
        )
    ]
    if adapter.position_embedding is not None:
        pe = adapter.position_embedding
        bottom.append(Component(POSITION_EMBEDDING, POSITION_EMBEDDING, pe, _add_positions(pe)))
    bottom += [
        Component(block_name(i), BLOCKS, adapter.blocks[i], _run_block(adapter, i)) for i in range(cut)
    ]
    top = [
        Component(block_name(i), BLOCKS, adapter.blocks[i], _run_block(adapter, i))
        for i in range(n_layers - cut, n_layers)
    ]
    top += [
        Component(FINAL_NORM, FINAL_NORM, adapter.final_norm, lambda h, kw: adapter.final_norm(h)),
        Component(LM_HEAD, LM_HEAD, adapter.unembed, lambda h, kw: adapter.unembed(h)),
    ]
    return Part("bottom", tuple(bottom), adapter), Part("top", tuple(top), adapter)


def lm_head_is_tied(adapter: ModelAdapter) -> bool:
    """Whether the LM head shares its weight with the token embedding (GPT-2 and SmolLM2 do)."""
    return adapter.unembed.weight is adapter.token_embedding.weight


def param_counts(part: Part) -> dict[str, int]:
    """Parameters per component. A tied LM head is counted in full on its own, as the seed does (38.60M for GPT-2)."""
    return {c.name: c.n_params() for c in part.components}

"""Keys: the down-projection's input at the subject's last token, averaged over the context templates
(MEMIT's ``compute_ks``: the mean within each context type, then over the types)."""

from __future__ import annotations

import torch

from repro import hooks
from repro.adapters import ModelAdapter
from repro.gradsim.memit.compute_z import EditRequest
from repro.gradsim.memit.contexts import flat, mean_over_context_types, subject_last_index
from repro.gradsim.scoring import prompt_ids


@torch.no_grad()
def subject_states(adapter: ModelAdapter, tokenizer, request: EditRequest, contexts: list[list[str]], site: str
                   ) -> torch.Tensor:
    """The activation at ``site`` (a ``repro.hooks`` name) at the subject's last token of every context +
    prompt: [n_contexts, d]. Blocks above the site's layer are not run."""
    texts = [c + request.prompt for c in flat(contexts)]
    rows = [prompt_ids(tokenizer, t) for t in texts]
    lookup = torch.tensor([subject_last_index(tokenizer, t, len(c) + request.subject_end)
                           for c, t in zip(flat(contexts), texts)])
    width = max(map(len, rows))
    ids = torch.tensor([r + [r[-1]] * (width - len(r)) for r in rows])
    _, layer = hooks.parse_hook_name(site)
    with hooks.caching(adapter, [site]) as cache:
        adapter.run_blocks(adapter.embed(ids), 0, layer + 1)
    return cache[site][torch.arange(len(rows)), lookup]


def compute_ks(adapter: ModelAdapter, tokenizer, request: EditRequest, layer: int, contexts: list[list[str]]
               ) -> torch.Tensor:
    """k [d_in] for one request at ``layer``."""
    states = subject_states(adapter, tokenizer, request, contexts, hooks.mlp_post(layer))
    return mean_over_context_types(states, contexts)


def current_z(adapter: ModelAdapter, tokenizer, request: EditRequest, layer: int) -> torch.Tensor:
    """The residual stream leaving ``layer`` at the subject's last token of the bare prompt, [d_model]."""
    return subject_states(adapter, tokenizer, request, [[""]], hooks.resid_post(layer))[0]

"""Keys and current outputs of a batch of edits, each with its own lower layers already edited: MEMIT's
``compute_ks`` (the down-projection's input at the subject's last token, the mean within each context
type, then over the types) and the residual stream leaving the last edited layer (``cur_zs``).

The K edits run as one batch although each has edited different weights: an edit's Delta W_l = u_l v_l^T
adds u_l (v_l . k_t) to the layer's output at each of *its* rows' positions (a hook), which is what
W_l + Delta W_l computes, without a model copy per edit. Rows stop at the subject's last token, the last
position either quantity reads (causality).
"""

from __future__ import annotations

import torch

from repro import hooks
from repro.adapters import ModelAdapter
from repro.gradsim.memit.compute_z import EditRequest
from repro.gradsim.memit.contexts import flat, subject_last_index
from repro.gradsim.scoring import prompt_ids

Factors = dict[int, tuple[torch.Tensor, torch.Tensor]]  # layer -> (u [d_out, r], v [d_in, r]): Delta W = u v^T


class SubjectRows:
    """Every request's context + prompt, up to the subject's last token, and the residual stream entering
    ``start`` (computed once: the layers below the first edited one are never edited)."""

    def __init__(self, adapter: ModelAdapter, tokenizer, requests: list[EditRequest], contexts: list[list[str]], start: int):
        texts = [(c, c + r.prompt, r) for r in requests for c in flat(contexts)]
        rows = [prompt_ids(tokenizer, t[: len(c) + r.subject_end]) for c, t, r in texts]
        self.lookup = torch.tensor([subject_last_index(tokenizer, t, len(c) + r.subject_end) for c, t, r in texts])
        self.rows = [row[: at + 1] for row, at in zip(rows, self.lookup.tolist())]
        self.n_contexts, self.contexts, self.start, self.adapter = len(flat(contexts)), contexts, start, adapter
        width = max(map(len, self.rows))
        ids = torch.tensor([r + r[-1:] * (width - len(r)) for r in self.rows])  # [K * n_contexts, pos]
        with torch.no_grad():
            self.hidden = adapter.run_blocks(adapter.embed(ids.to(adapter.device)), 0, start)

    @torch.no_grad()
    def states(self, sites: list[str], factors: list[Factors]) -> dict[str, torch.Tensor]:
        """{site: [K, n_contexts, d]} at the subject's last token, each edit's ``factors`` applied to its rows."""
        stored: dict[str, torch.Tensor] = {}

        def keep_input(act, name):
            stored[name] = act

        fns = {}
        for layer in sorted({la for f in factors for la in f}):
            u, v = (_per_row(factors, layer, i, self.n_contexts).to(self.hidden.device) for i in (0, 1))  # [R, d, r]
            post = hooks.mlp_post(layer)

            def add_edit(act, name, u=u, v=v, post=post):
                keys = stored[post]  # [R, pos, d_in]
                return act + ((keys.double() @ v) @ u.transpose(1, 2)).to(act.dtype)  # + Delta W k_t, per row

            fns[post] = keep_input
            fns[hooks.mlp_out(layer)] = add_edit
        for site in sites:
            previous = fns.get(site)

            def cache(act, name, previous=previous):
                out = previous(act, name) if previous else None
                stored["cache:" + name] = act.detach().clone()
                return out

            fns[site] = cache
        stop = max(hooks.parse_hook_name(s)[1] for s in sites) + 1
        with hooks.hooks(self.adapter, fns):
            self.adapter.run_blocks(self.hidden, self.start, stop)
        at = torch.arange(len(self.rows), device=self.hidden.device)
        return {s: stored["cache:" + s][at, self.lookup.to(at.device)].view(-1, self.n_contexts, stored["cache:" + s].shape[-1])
                for s in sites}

    def keys_and_outputs(self, layer: int, z_layer: int, factors: list[Factors]) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys [K, d_in] at ``layer``, the residual stream leaving ``z_layer`` at the bare prompt [K, d_model])."""
        post, resid = hooks.mlp_post(layer), hooks.resid_post(z_layer)
        states = self.states([post, resid], factors)
        means, start = [], 0
        for kind in self.contexts:
            means.append(states[post][:, start : start + len(kind)].mean(1))
            start += len(kind)
        return torch.stack(means).mean(0).cpu(), states[resid][:, 0].cpu()


def _per_row(factors: list[Factors], layer: int, which: int, repeat: int) -> torch.Tensor:
    """u (which=0) or v (1) of every edit at ``layer`` as float64 [K * repeat, d, r], zero where an edit has none."""
    reference = next(f[layer][which] for f in factors if layer in f)
    mats = [f[layer][which] if layer in f else torch.zeros_like(reference) for f in factors]
    return torch.stack(mats).double().repeat_interleave(repeat, 0)

"""The target vector z = h + delta for one edit: MEMIT's ``compute_z``.

h is the residual stream leaving the last edited layer at the subject's last token (bare prompt). delta is
added there, at the subject's last token of every prompt, and optimised with Adam on

    NLL of the new target after each context-prefixed prompt (mean over prompts, per target token)
  + kl_factor * KL(now || before) of the next-token distribution after "{subject} is a"
  + v_weight_decay * ||delta|| / ||h||^2,

with ||delta|| clamped to clamp_norm_factor * ||h|| after every step. The blocks below the injection do
not depend on delta, so their output is computed once; each step runs only the blocks above it and the
unembedding at the positions the loss reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from repro.adapters import ModelAdapter
from repro.gradsim.memit.contexts import flat, subject_last_index
from repro.gradsim.memit.hparams import MemitHyperParams
from repro.gradsim.scoring import answer_token_ids, prompt_ids


@dataclass(frozen=True)
class EditRequest:
    prompt: str  # contains the subject; the new target continues it
    subject: str
    target_new: str  # with its leading space

    @property
    def subject_end(self) -> int:
        return self.prompt.index(self.subject) + len(self.subject)


@dataclass(frozen=True)
class TargetVector:
    z: torch.Tensor  # [d_model]
    h_norm: float
    delta_norm: float
    steps: int
    nll_before: float  # mean NLL per target token over the contexts, before optimisation
    nll_after: float


def _rows(tokenizer, request: EditRequest, contexts: list[list[str]]):
    """Token rows: every context + prompt followed by the target, then the KL prompt; lookup indices."""
    target = answer_token_ids(tokenizer, request.target_new)
    rows, lookups = [], []
    for context in flat(contexts):
        text = context + request.prompt
        rows.append(prompt_ids(tokenizer, text) + target)
        lookups.append(subject_last_index(tokenizer, text, len(context) + request.subject_end))
    kl_text = f"{request.subject} is a"
    rows.append(prompt_ids(tokenizer, kl_text))
    lookups.append(subject_last_index(tokenizer, kl_text, len(request.subject)))
    width = max(map(len, rows))
    ids = torch.tensor([r + [r[-1]] * (width - len(r)) for r in rows])  # right padding never reaches real positions
    return ids, torch.tensor(lookups), torch.tensor([len(r) for r in rows]), torch.tensor(target)


def compute_z(adapter: ModelAdapter, tokenizer, request: EditRequest, hp: MemitHyperParams,
              contexts: list[list[str]]) -> TargetVector:
    ids, lookup, lengths, target = _rows(tokenizer, request, contexts)  # [rows, pos], [rows], [rows], [n_t]
    n_rewrite, n_t, layer = ids.shape[0] - 1, len(target), hp.z_layer
    with torch.no_grad():
        hidden = adapter.embed(ids)
        kwargs = adapter.block_kwargs(hidden)
        hidden = adapter.run_blocks(hidden, 0, layer + 1, kwargs)  # [rows, pos, d_model]
    h = hidden[0, lookup[0]].clone()  # the bare prompt comes first
    at_lookup = torch.zeros(hidden.shape[:2] + (1,))
    at_lookup[torch.arange(len(ids)), lookup] = 1.0  # [rows, pos, 1]
    # Positions whose logits the loss reads: those predicting each target token, and the KL row's lookup.
    rw_rows = torch.arange(n_rewrite).repeat_interleave(n_t)
    rw_pos = (lengths[:n_rewrite, None] - n_t - 1 + torch.arange(n_t)[None]).flatten()
    rw_target = target.repeat(n_rewrite)

    delta = torch.zeros_like(h, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=hp.v_lr)
    max_norm = hp.clamp_norm_factor * h.norm()
    kl_init, nll_before, steps = None, None, 0
    for step in range(hp.v_num_grad_steps):
        with torch.enable_grad():
            final = adapter.run_blocks(hidden + at_lookup * delta, layer + 1, None, kwargs)
            logp = adapter.logits(final[rw_rows, rw_pos]).log_softmax(-1)  # [n_rewrite * n_t, vocab]
            nll = -logp.gather(-1, rw_target[:, None]).view(n_rewrite, n_t).sum(1) / n_t  # [n_rewrite]
            kl_logp = adapter.logits(final[n_rewrite, lookup[n_rewrite]]).log_softmax(-1)[None]  # [1, vocab]
            if kl_init is None:
                kl_init, nll_before = kl_logp.detach(), float(nll.detach().mean())
            kl = torch.nn.functional.kl_div(kl_init, kl_logp, log_target=True, reduction="batchmean")
            loss = nll.mean() + hp.kl_factor * kl + hp.v_weight_decay * delta.norm() / h.norm() ** 2
            steps = step + 1
            if loss < hp.early_stop_loss or step == hp.v_num_grad_steps - 1:
                break  # as MEMIT: the last step only measures
            opt.zero_grad()
            loss.backward()
        opt.step()
        with torch.no_grad():
            if delta.norm() > max_norm:
                delta.mul_(max_norm / delta.norm())
    return TargetVector(
        z=(h + delta).detach(), h_norm=float(h.norm()), delta_norm=float(delta.detach().norm()), steps=steps,
        nll_before=nll_before, nll_after=float(nll.detach().mean()),
    )

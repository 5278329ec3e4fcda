"""The target vectors z = h + delta of a batch of edits: MEMIT's ``compute_z``, for K requests at once.

h is the residual stream leaving the last edited layer at the subject's last token (bare prompt). delta
is added there, at the subject's last token of every prompt, and optimised with Adam on

    NLL of the new target after each context-prefixed prompt (mean over prompts, per target token)
  + kl_factor * KL(now || before) of the next-token distribution at the subject's last token of "{subject} is a"
  + v_weight_decay * ||delta|| / ||h||^2,

with ||delta|| clamped to clamp_norm_factor * ||h|| after every step. As in MEMIT, an edit stops when its
loss falls below ``early_stop_loss`` or at the last step (which only measures).

The K edits are independent rows of one batch: delta is [K, d_model], the loss is the sum of the edits'
losses (so each row's gradient is its own edit's), Adam's update is element-wise, and an edit that stops
leaves the batch (its row is frozen) while the others go on: each edit follows exactly the trajectory it
would follow alone (a unit test checks it). Only what depends on delta is recomputed at each step:

- the blocks up to the injection layer run once;
- positions before an edit's subject token cannot see delta (causality): their keys/values in the blocks
  above are recorded once and each step runs only the positions from the subject's last token on
  (``RaggedPrefixKV``: per-row prefixes of different lengths);
- rows end at the last position whose prediction the loss reads (the last target token is not an input;
  the KL row ends at the subject), and run in groups of similar length (little padding);
- the unembedding runs only at the positions the loss reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from repro.adapters import KVRecorder, ModelAdapter, RaggedPrefixKV
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
    steps: int  # loss evaluations (the last one only measures)
    nll_before: float  # mean NLL per target token over the contexts, before optimisation
    nll_after: float
    losses: tuple[float, ...]  # the loss at every step: the trajectory


@dataclass
class _Rows:
    """Every edit's rows: n_contexts rewrite rows (context + prompt + target minus its last token) and one
    KL row ("{subject} is a" up to the subject), flattened edit-major."""

    ids: list[list[int]]
    lookup: torch.Tensor  # [R] the subject's last token
    edit: torch.Tensor  # [R] which request a row belongs to
    bare: torch.Tensor  # [K] each request's bare-prompt row
    read_row: torch.Tensor  # [T] rewrite rows, once per target token
    read_pos: torch.Tensor  # [T] the position predicting that token
    read_target: torch.Tensor  # [T] the token
    read_weight: torch.Tensor  # [T] 1 / (n_target * n_contexts): sums to each edit's mean NLL per token
    kl_row: torch.Tensor  # [K]


def _rows(tokenizer, requests: list[EditRequest], contexts: list[list[str]]) -> _Rows:
    ids, lookup, edit, bare, kl = [], [], [], [], []
    read_row, read_pos, read_target, read_weight = [], [], [], []
    for e, request in enumerate(requests):
        target = answer_token_ids(tokenizer, request.target_new)
        for c, context in enumerate(flat(contexts)):
            text = context + request.prompt
            row = prompt_ids(tokenizer, text)
            if c == 0:
                bare.append(len(ids))
            for k, token in enumerate(target):
                read_row.append(len(ids))
                read_pos.append(len(row) - 1 + k)
                read_target.append(token)
                read_weight.append(1.0 / (len(target) * len(flat(contexts))))
            ids.append(row + target[:-1])
            lookup.append(subject_last_index(tokenizer, text, len(context) + request.subject_end))
            edit.append(e)
        kl_text = f"{request.subject} is a"
        at = subject_last_index(tokenizer, kl_text, len(request.subject))
        kl.append(len(ids))
        ids.append(prompt_ids(tokenizer, kl_text)[: at + 1])
        lookup.append(at)
        edit.append(e)
    t = torch.tensor
    return _Rows(ids, t(lookup), t(edit), t(bare), t(read_row), t(read_pos), t(read_target),
                 t(read_weight, dtype=torch.float64), t(kl))


def _groups(lengths: torch.Tensor, slack: float = 1.25) -> list[torch.Tensor]:
    """Row indices in groups of similar length (longest first), each padded to at most ``slack`` x its
    real tokens: one forward pass per group instead of one padded to the longest row of all."""
    order = torch.argsort(lengths, descending=True, stable=True).tolist()
    groups: list[list[int]] = []
    for r in order:
        if groups and (len(groups[-1]) + 1) * int(lengths[groups[-1][0]]) <= slack * (
                int(lengths[groups[-1]].sum()) + int(lengths[r])):
            groups[-1].append(r)
        else:
            groups.append([r])
    return [torch.tensor(g) for g in groups]


def compute_zs(adapter: ModelAdapter, tokenizer, requests: list[EditRequest], hp: MemitHyperParams,
               contexts: list[list[str]]) -> list[TargetVector]:
    """The target vector of every request, optimised together (each as it would be alone)."""
    rows = _rows(tokenizer, requests, contexts)  # index book-keeping stays on the CPU; ``dev`` moves what meets the model
    n_edits, n_rows, layer = len(requests), len(rows.ids), hp.z_layer
    device = adapter.device

    def dev(t: torch.Tensor) -> torch.Tensor:
        return t.to(device)

    lengths = torch.tensor([len(r) for r in rows.ids])
    width = int(lengths.max())
    ids = torch.tensor([r + r[-1:] * (width - len(r)) for r in rows.ids])  # right padding never reaches real positions
    with torch.no_grad():
        hidden = adapter.run_blocks(adapter.embed(dev(ids)), 0, layer + 1)  # [R, pos, d_model]
        h = hidden[dev(rows.bare), dev(rows.lookup[rows.bare])]  # [K, d_model]
        recorder = KVRecorder()  # the blocks above, on the positions before each subject token
        prefix_width = max(int(rows.lookup.max()), 1)
        before = hidden[:, :prefix_width]
        adapter.run_blocks(before, layer + 1, None, {**adapter.block_kwargs(before), adapter.cache_kwarg: recorder})
        prefix = RaggedPrefixKV.from_recorder(recorder, rows.lookup)
        n_suffix = lengths - rows.lookup  # [R] positions from the subject's last token on
        gather = (rows.lookup[:, None] + torch.arange(int(n_suffix.max()))[None]).clamp(max=width - 1)
        suffix = hidden[dev(torch.arange(n_rows)[:, None]), dev(gather)]  # [R, S, d_model]
    read_pos = rows.read_pos - rows.lookup[rows.read_row]  # in suffix coordinates
    kl_of_row = torch.full((n_rows,), -1, dtype=torch.long)
    kl_of_row[rows.kl_row] = torch.arange(n_edits)

    def plan(active: torch.Tensor) -> list[tuple]:
        """Per group of the active edits' rows: (rows, suffix, kwargs, reads, read rows within, KL rows within)."""
        out = []
        for group in _groups(n_suffix * torch.isin(rows.edit, active)):
            group = group[torch.isin(rows.edit[group], active)]
            if not len(group):
                continue
            within = torch.full((n_rows,), -1, dtype=torch.long)
            within[group] = torch.arange(len(group))
            part = suffix[dev(group), : int(n_suffix[group].max())]
            reads = torch.nonzero(within[rows.read_row] >= 0)[:, 0]
            kls = group[kl_of_row[group] >= 0]
            out.append((group, part, adapter.ragged_suffix_kwargs(part, prefix.select(group)), reads,
                        within[rows.read_row[reads]], within[kls], kl_of_row[kls]))
        return out

    delta = torch.zeros_like(h, requires_grad=True)  # [K, d_model]
    opt = torch.optim.Adam([delta], lr=hp.v_lr)
    max_norm = hp.clamp_norm_factor * h.norm(dim=1)  # [K]
    kl_init = torch.zeros(n_edits, adapter.d_vocab, dtype=hidden.dtype, device=device)
    losses: list[list[float]] = [[] for _ in requests]
    nll_before = torch.zeros(n_edits, dtype=torch.float64)
    done: dict[int, tuple[torch.Tensor, float, int]] = {}  # edit -> (delta, nll, steps)
    active = torch.arange(n_edits)
    groups = plan(active)
    for step in range(hp.v_num_grad_steps):
        with torch.enable_grad():
            nll = torch.zeros(n_edits, dtype=hidden.dtype, device=device)
            kl = torch.zeros(n_edits, dtype=hidden.dtype, device=device)
            for group, part, kwargs, reads, read_at, kl_at, kl_edit in groups:
                injected = part.clone()
                injected[:, 0] = injected[:, 0] + delta[dev(rows.edit[group])]  # the subject's last token
                final = adapter.run_blocks(injected, layer + 1, None, kwargs)
                if len(reads):
                    logp = adapter.logits(final[dev(read_at), dev(read_pos[reads])]).log_softmax(-1)
                    token_nll = -logp.gather(-1, dev(rows.read_target[reads, None]))[:, 0]
                    weight = dev(rows.read_weight[reads]).to(token_nll.dtype)
                    nll = nll.index_add(0, dev(rows.edit[rows.read_row[reads]]), token_nll * weight)
                if len(kl_at):
                    kl_logp = adapter.logits(final[dev(kl_at), 0]).log_softmax(-1)  # [k, vocab]
                    if step == 0:
                        kl_init[dev(kl_edit)] = kl_logp.detach()
                    kl = kl.index_add(0, dev(kl_edit), (kl_logp.exp() * (kl_logp - kl_init[dev(kl_edit)])).sum(-1))  # KL(now || before)
            if step == 0:
                nll_before = nll.detach().double().cpu()
            on = dev(active)
            loss = (nll[on] + hp.kl_factor * kl[on] + hp.v_weight_decay * delta[on].norm(dim=1) / h[on].norm(dim=1) ** 2)  # [K']
        stop = ((loss.detach() < hp.early_stop_loss) | (step == hp.v_num_grad_steps - 1)).cpu()
        for e, value, nll_e, stops in zip(active.tolist(), loss.detach().tolist(), nll[on].detach().tolist(), stop.tolist()):
            losses[e].append(value)
            if stops:
                done[e] = (delta[e].detach().clone(), nll_e, step + 1)
        if bool(stop.all()):
            break
        opt.zero_grad()
        loss[dev(~stop)].sum().backward()
        frozen = delta.detach().clone()
        opt.step()
        if bool(stop.any()):
            active = active[~stop]
            groups = plan(active)
        with torch.no_grad():
            keep = torch.ones(n_edits, dtype=torch.bool)
            keep[active] = False
            keep, on = dev(keep), dev(active)
            delta[keep] = frozen[keep]  # stopped edits do not move (Adam's momentum would move them)
            norms = delta[on].norm(dim=1)
            scale = torch.where(norms > max_norm[on], max_norm[on] / norms, torch.ones_like(norms))
            delta[on] = delta[on] * scale[:, None]
    return [
        TargetVector(z=(h[e] + done[e][0]).detach().cpu(), h_norm=float(h[e].norm()), delta_norm=float(done[e][0].norm()),
                     steps=done[e][2], nll_before=float(nll_before[e]), nll_after=float(done[e][1]),
                     losses=tuple(losses[e]))
        for e in range(n_edits)
    ]


def compute_z(adapter: ModelAdapter, tokenizer, request: EditRequest, hp: MemitHyperParams,
              contexts: list[list[str]]) -> TargetVector:
    """One request's target vector (a batch of one)."""
    return compute_zs(adapter, tokenizer, [request], hp, contexts)[0]

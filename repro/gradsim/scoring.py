"""log P(a|q) of cloze pieces, batched: the sum of the answer's token log-probabilities (never truncated),
and whether greedy decoding reproduces the answer (exact match, teacher-forced).

Prompts and answers are tokenised separately and concatenated, so the answer's tokens are the same in every
context; sequences are right-padded, which leaves a causal model's real positions untouched. Rows are run
in length-sorted chunks (``chunks``: little padding) and trimmed before their last token, which predicts
nothing that is scored. Only the positions that predict answer tokens go through the unembedding (the
vocabulary is the costliest matrix). ``Scorer`` caches the residual stream entering a layer once, so
scoring after an edit of that layer or later ones runs only the blocks from there on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from repro.adapters import ModelAdapter

CHUNK_TOKENS = 1024  # rows x width per forward pass: large enough to keep matrix products efficient


@dataclass
class PieceBatch:
    ids: torch.Tensor  # [n, pos] right-padded token ids
    lengths: torch.Tensor  # [n] real tokens per row
    answer_pos: list[torch.Tensor]  # per row: positions holding the answer's tokens [n_answer]
    answer_ids: list[torch.Tensor]  # per row: the answer's token ids [n_answer]

    @property
    def n(self) -> int:
        return self.ids.shape[0]

    def rows(self, index) -> PieceBatch:
        """The rows ``index`` (in that order), as wide as the longest of them minus its last token: that
        token is an answer token whose own prediction is not scored."""
        index = list(index)
        width = int(self.lengths[index].max()) - 1
        return PieceBatch(self.ids[index, :width], self.lengths[index], [self.answer_pos[i] for i in index],
                          [self.answer_ids[i] for i in index])

    def chunks(self, max_tokens: int = CHUNK_TOKENS) -> list[list[int]]:
        """Row indices in chunks of similar length (sorted, longest first), each at most ``max_tokens``
        rows x width (and at least one row)."""
        order = torch.argsort(self.lengths, descending=True, stable=True).tolist()
        out: list[list[int]] = []
        for i in order:
            if out and (len(out[-1]) + 1) * int(self.lengths[out[-1][0]]) <= max_tokens:
                out[-1].append(i)
            else:
                out.append([i])
        return out


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    return tokenizer(prompt)["input_ids"]  # with the model's BOS where its tokenizer adds one


def answer_token_ids(tokenizer, answer: str) -> list[int]:
    return tokenizer(answer, add_special_tokens=False)["input_ids"]


def tokenize(tokenizer, pairs: list[tuple[str, str]]) -> PieceBatch:
    """(prompt, answer) pairs -> a right-padded batch."""
    rows, positions, answers = [], [], []
    for prompt, answer in pairs:
        q, a = prompt_ids(tokenizer, prompt), answer_token_ids(tokenizer, answer)
        if not a:
            raise ValueError(f"Answer {answer!r} tokenises to nothing.")
        rows.append(q + a)
        positions.append(torch.arange(len(q), len(q) + len(a)))
        answers.append(torch.tensor(a))
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row)
    return PieceBatch(ids, torch.tensor([len(r) for r in rows]), positions, answers)


def answer_scores(adapter: ModelAdapter, batch: PieceBatch, final_hidden: torch.Tensor):
    """(log P(a|q) [n], greedy exact match [n]) from the last block's output [n, pos, d_model], on its device."""
    device = final_hidden.device
    rows = torch.cat([torch.full_like(p, r) for r, p in enumerate(batch.answer_pos)]).to(device)
    pos = torch.cat(batch.answer_pos).to(device)
    logp = adapter.logits(final_hidden[rows, pos - 1]).log_softmax(-1)  # [n_answer_tokens, vocab]
    target = torch.cat(batch.answer_ids).to(device)
    token_logp = logp.gather(-1, target[:, None])[:, 0]
    hit = logp.argmax(-1) == target
    logprob = torch.zeros(batch.n, dtype=logp.dtype, device=device).index_add_(0, rows, token_logp)
    misses = torch.zeros(batch.n, dtype=torch.long, device=device).index_add_(0, rows, (~hit).long())
    return logprob, misses == 0


class Scorer:
    """Scores a fixed batch of pieces again and again (after each edit), from the residual stream
    entering layer ``start`` (computed once: edits at ``start`` or above cannot change it)."""

    def __init__(self, adapter: ModelAdapter, batch: PieceBatch, start: int = 0, max_tokens: int = CHUNK_TOKENS):
        self.adapter, self.batch, self.start = adapter, batch, start
        self.parts = [(index, batch.rows(index)) for index in batch.chunks(max_tokens)]
        self.hidden = []  # per chunk: [rows, pos, d_model] entering block ``start``
        with torch.no_grad():
            for _, part in self.parts:
                hidden = adapter.embed(part.ids.to(adapter.device))
                self.hidden.append(adapter.run_blocks(hidden, 0, start) if start else hidden)

    @torch.no_grad()
    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(log P(a|q) [n] float64, exact match [n]) with the model's current weights, in the batch's order (CPU)."""
        logprob = torch.zeros(self.batch.n, dtype=torch.float64)
        match = torch.zeros(self.batch.n, dtype=torch.bool)
        for (index, part), hidden in zip(self.parts, self.hidden):
            final = self.adapter.run_blocks(hidden, self.start)
            lp, m = answer_scores(self.adapter, part, final)
            logprob[index], match[index] = lp.double().cpu(), m.cpu()
        return logprob, match


def score(adapter: ModelAdapter, tokenizer, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """One-off scores of (prompt, answer) pairs with the current weights."""
    return Scorer(adapter, tokenize(tokenizer, pairs))()

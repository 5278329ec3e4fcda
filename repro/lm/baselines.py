"""Count-based baselines on the models' own training tokens: the gate every neural model must pass.

- ``Unigram``: add-one (Laplace) word frequencies over the shared vocabulary; a model that cannot beat it
  has learned nothing about context.
- ``KneserNeyBigram``: interpolated Kneser–Ney (Kneser & Ney 1995; Chen & Goodman 1998, eq. 13) with one
  absolute discount, the continuation unigram itself interpolated with the uniform distribution so every word
  of the vocabulary keeps some probability:

      P(w | v) = max(c(v, w) - d, 0) / c(v) + d * N1+(v •) / c(v) * P_cont(w)
      P_cont(w) = max(N1+(• w) - d, 0) / N1+(• •) + d * |{w: N1+(• w) > 0}| / N1+(• •) / V

  and P_cont(w) alone after a context never seen in training.

Both score exactly the tokens a model scores: ``token_losses(contexts, targets)`` takes the previous word
and the word to predict, each [n] (or any shape), and returns the loss in nats per token, so a model's
per-token losses and a baseline's can be differenced position by position.
"""

from __future__ import annotations

import numpy as np
import torch

DISCOUNT = 0.75  # the usual single KN discount (Chen & Goodman's D = n1 / (n1 + 2 n2) is ~0.7-0.8 on PTB)


def _numpy(ids) -> np.ndarray:
    return ids.cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)


class Unigram:
    """Add-one word frequencies of ``train_ids`` over a vocabulary of ``vocab_size`` words."""

    name = "unigram (add-one)"

    def __init__(self, train_ids, vocab_size: int):
        counts = np.bincount(_numpy(train_ids), minlength=vocab_size).astype(float) + 1.0
        self.log_p = np.log(counts / counts.sum())  # [vocab]

    def token_losses(self, contexts, targets) -> np.ndarray:
        return -self.log_p[_numpy(targets)]


class KneserNeyBigram:
    """Interpolated Kneser–Ney bigram of the stream ``train_ids`` (consecutive ids are bigrams)."""

    name = "Kneser–Ney bigram"

    def __init__(self, train_ids, vocab_size: int, discount: float = DISCOUNT):
        ids = _numpy(train_ids).astype(np.int64)
        self.vocab_size, self.d = vocab_size, discount
        pairs = ids[:-1] * vocab_size + ids[1:]  # bigram (v, w) as one integer
        keys, counts = np.unique(pairs, return_counts=True)
        self.bigram = dict(zip(keys.tolist(), counts.tolist()))  # c(v, w)
        first, second = keys // vocab_size, keys % vocab_size
        self.context_count = np.bincount(ids[:-1], minlength=vocab_size).astype(float)  # c(v)
        self.followers = np.bincount(first, minlength=vocab_size).astype(float)  # N1+(v •)
        preceders = np.bincount(second, minlength=vocab_size).astype(float)  # N1+(• w)
        types = float(len(keys))  # N1+(• •)
        seen = float((preceders > 0).sum())
        self.p_cont = np.maximum(preceders - discount, 0) / types + discount * seen / types / vocab_size  # [vocab]

    def token_losses(self, contexts, targets) -> np.ndarray:
        v, w = _numpy(contexts).astype(np.int64), _numpy(targets).astype(np.int64)
        shape = v.shape
        v, w = v.reshape(-1), w.reshape(-1)
        c_vw = np.array([self.bigram.get(k, 0) for k in (v * self.vocab_size + w).tolist()], dtype=float)
        c_v = self.context_count[v]
        seen = c_v > 0
        safe = np.where(seen, c_v, 1.0)
        p = np.where(seen, np.maximum(c_vw - self.d, 0) / safe + self.d * self.followers[v] / safe * self.p_cont[w],
                     self.p_cont[w])
        return -np.log(p).reshape(shape)


def baselines(train_ids, vocab_size: int) -> dict[str, Unigram | KneserNeyBigram]:
    """The two baselines every comparison shows, keyed as the report names them."""
    return {"unigram": Unigram(train_ids, vocab_size), "kn_bigram": KneserNeyBigram(train_ids, vocab_size)}

"""The IOI metric: the logit difference IO - S at the final position, and its normalised form.

Only two rows of the unembedding are ever needed, so the metric applies the final norm to the final
position and dots it with ``W_U[IO] - W_U[S]``: [batch, d_model] -> [batch], instead of the full
[batch, pos, d_vocab] LM head.
"""

from __future__ import annotations

import torch

from repro.adapters import ModelAdapter


def logit_diff(
    adapter: ModelAdapter, final_resid: torch.Tensor, io: torch.Tensor, s: torch.Tensor
) -> torch.Tensor:
    """logit(IO) - logit(S) from the residual stream at the final position: [batch, d_model] -> [batch]."""
    normed = adapter.final_norm(final_resid)
    w = adapter.unembed.weight  # [d_vocab, d_model]
    diff = (normed * (w[io] - w[s])).sum(-1)
    bias = adapter.unembed.bias
    return diff if bias is None else diff + bias[io] - bias[s]


def logit_diff_from_logits(logits: torch.Tensor, io: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The same metric from full logits [batch, pos, d_vocab] -> [batch] (the naive baseline's route)."""
    last = logits[:, -1]
    rows = torch.arange(last.shape[0], device=last.device)
    return last[rows, io] - last[rows, s]


def normalised(patched, clean_mean: float, corrupted_mean: float):
    """(patched - corrupted) / (clean - corrupted) on batch-mean logit differences, as in the
    TransformerLens IOI notebook: 0 = patching did nothing, 1 = it restored the clean behaviour fully.
    Means before the ratio, because per-pair ratios explode on pairs with a small clean/corrupted gap."""
    return (patched - corrupted_mean) / (clean_mean - corrupted_mean)

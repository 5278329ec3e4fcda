"""Filter: keep the pairs the model gets right, so patching explains behaviour that is actually there.

A pair is kept when the clean prompt prefers the indirect object (logit diff IO - S > 0) and, for the seed's
S2-swap corruption, the corrupted prompt prefers the other name (logit diff < 0: the answer flips). An ABC
corruption has no correct answer among IO and S, so it only needs to lower the logit diff.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from repro.adapters import ModelAdapter
from repro.ioi.dataset import S2_SWAP, IOIPair, PairBatch
from repro.ioi.metric import logit_diff

CLEAN_WRONG = "clean prompt does not prefer IO"
NOT_FLIPPED = "S2 swap does not flip the answer"
NOT_LOWERED = "corruption does not lower the logit diff"


class NoPairsLeft(ValueError):
    """Every pair was filtered out: there is no behaviour to explain."""


@dataclass
class FilterResult:
    batches: list[PairBatch]  # the kept pairs, batched as given
    n_total: int
    n_kept: int
    drop_reasons: dict[str, int]  # reason -> count
    clean_ld: dict[int, float]  # pair index -> logit diff, for every pair (kept or not)
    corrupted_ld: dict[int, float]


def final_logit_diff(
    adapter: ModelAdapter, ids: torch.Tensor, io: torch.Tensor, s: torch.Tensor
) -> torch.Tensor:
    """Logit diff of whole prompts [batch, pos] -> [batch]."""
    with torch.no_grad():
        final = adapter.run_blocks(adapter.embed(ids))[:, -1]
        return logit_diff(adapter, final, io, s)


def filter_pairs(
    adapter: ModelAdapter, batches: list[PairBatch], pairs: list[IOIPair], model_name: str = "model"
) -> FilterResult:
    """Run every clean and corrupted prompt once; keep the pairs the model answers correctly."""
    kept, reasons, clean_ld, corrupted_ld = [], Counter(), {}, {}
    for batch in batches:
        clean = final_logit_diff(adapter, batch.clean, batch.io, batch.s)
        corrupted = final_logit_diff(adapter, batch.corrupted, batch.io, batch.s)
        rows = []
        for row, i in enumerate(batch.index):
            c, x = float(clean[row]), float(corrupted[row])
            clean_ld[i], corrupted_ld[i] = c, x
            if c <= 0:
                reasons[CLEAN_WRONG] += 1
            elif pairs[i].corruption == S2_SWAP and x >= 0:
                reasons[NOT_FLIPPED] += 1
            elif x >= c:
                reasons[NOT_LOWERED] += 1
            else:
                rows.append(row)
        if rows:
            kept.append(batch.select(rows))
    n_total = sum(b.size for b in batches)
    n_kept = sum(b.size for b in kept)
    if n_kept == 0:
        raise NoPairsLeft(
            f"{model_name}: all {n_total} IOI pairs were filtered out ({dict(reasons)}): the model does not do the "
            f"task on these prompts. Check the model and the pairs (io must be the correct answer on the clean "
            f"prompt), or generate more pairs."
        )
    return FilterResult(kept, n_total, n_kept, dict(reasons), clean_ld, corrupted_ld)

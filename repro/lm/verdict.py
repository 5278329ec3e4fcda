"""The rules that decide claim 5's two verdicts, and the seed's published numbers."""

from __future__ import annotations

from repro.verdicts import Verdict

# Seed 004 as quoted in the claim-5 issue.
PUBLISHED = {
    # Part A: final (train, validation) loss on Penn Treebank
    "ptb_losses": {"transformer": (4.0, 4.6), "lstm": (4.5, 5.1), "rnn": (4.5, 5.2)},
    # Part B: validation perplexity on WikiText-2
    "wikitext2_val_ppl": {"transformer": 346.8285, "lstm": 390.0218, "rnn": 411.1751},
    # Part C: GPT-2 small fine-tuned on PubMedQA (~600 steps)
    "finetune": {"loss_before": 3.09, "loss_after": 2.25, "ppl_before": 28.32, "ppl_after": 8.78, "factor": 3.2,
                 "steps": 600},
}
CLAIMED_ORDER = ("transformer", "lstm", "rnn")  # lowest perplexity first
JUDGED_CORPORA = ("ptb", "wikitext2")  # each model trained and validated on the same corpus
FINETUNE_FACTOR = 2.0  # held-out perplexity must fall at least this many times


def ordering(ppl: dict[str, float]) -> tuple[str, ...]:
    """Model kinds from the lowest perplexity to the highest."""
    return tuple(sorted(ppl, key=ppl.get))


def architecture_verdict(val_ppl: dict[str, dict[str, float]]) -> Verdict:
    """``val_ppl[corpus][kind]``. REPRODUCED when Transformer < LSTM < RNN on both corpora; PARTIAL when the
    Transformer is lowest on at least one of them (or lowest on both with LSTM and RNN swapped);
    NOT_REPRODUCED when it is lowest on neither."""
    orders = [ordering(val_ppl[c]) for c in JUDGED_CORPORA]
    if all(o == CLAIMED_ORDER for o in orders):
        return Verdict.REPRODUCED
    if any(o[0] == "transformer" for o in orders):
        return Verdict.PARTIAL
    return Verdict.NOT_REPRODUCED


def finetune_verdict(ppl_before: float, ppl_after: float) -> Verdict:
    """REPRODUCED when held-out perplexity falls at least ``FINETUNE_FACTOR`` times; NOT_REPRODUCED otherwise."""
    return Verdict.REPRODUCED if ppl_before / ppl_after >= FINETUNE_FACTOR else Verdict.NOT_REPRODUCED

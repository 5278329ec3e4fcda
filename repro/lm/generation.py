"""Seeded temperature sampling from a word LM, and simple measures of the samples.

The seed judged its samples by eye ("the Transformer is the most grammatical, coherent and least repetitive,
the RNN the most repetitive"); here the repetition and variety are counted:

- repeated 3-gram rate: share of a sample's 3-grams that already occurred earlier in the same sample;
- ``<unk>`` rate: share of generated words that are ``<unk>``;
- distinct-1/2 (Li et al. 2016): distinct n-grams / all n-grams, pooled over a model's samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from repro.lm.corpus import UNK, Vocabulary

PROMPTS = ("a", "the meaning of life is")  # seed 004's


@torch.no_grad()
def sample(model: nn.Module, vocab: Vocabulary, prompt: str, n_words: int, *, temperature: float = 1.0,
           seed: int = 0) -> list[str]:
    """``n_words`` words sampled after ``prompt`` (its unknown words read as ``<unk>``); the same seed gives
    the same words. One code path for every model: the state carries the context."""
    if temperature <= 0:
        raise ValueError(f"temperature {temperature} must be positive")
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    ids = vocab.encode(prompt.split())[None].to(device)  # [1, prompt words]
    logits, state = model(ids, None)
    out = []
    for _ in range(n_words):
        # double on the CPU: the same draw on any thread count and device
        probs = torch.softmax(logits[0, -1].double().cpu() / temperature, dim=-1)
        next_id = torch.multinomial(probs, 1, generator=generator)  # [1]
        out.append(vocab.itos[int(next_id)])
        logits, state = model(next_id[None].to(device), state)
    return out


def repeated_ngram_rate(words: list[str], n: int = 3) -> float:
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    seen, repeats = set(), 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams) if grams else 0.0


def distinct_n(samples: list[list[str]], n: int) -> float:
    grams = [tuple(s[i : i + n]) for s in samples for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


@dataclass(frozen=True)
class SampleStats:
    repeated_3gram_rate: float
    unk_rate: float
    distinct_1: float
    distinct_2: float

    @classmethod
    def of(cls, samples: list[list[str]]) -> SampleStats:
        n_words = sum(len(s) for s in samples)
        return cls(
            repeated_3gram_rate=sum(repeated_ngram_rate(s) for s in samples) / len(samples),
            unk_rate=sum(w == UNK for s in samples for w in s) / max(n_words, 1),
            distinct_1=distinct_n(samples, 1),
            distinct_2=distinct_n(samples, 2),
        )

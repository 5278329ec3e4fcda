"""Context templates and the subject's last token: where MEMIT reads keys and writes the target vector.

MEMIT averages keys and optimises delta over the bare prompt and a few model-generated prefixes
("The", "Therefore", "Because", "I", "You" followed by ten generated tokens), so the edit holds in
context. As in MEMIT they are sampled from the model's top 5 tokens, here with a seeded generator and
float64 probabilities, so they are the same on every run (greedy decoding of a small model degenerates
into repetition, which would make poor contexts).
"""

from __future__ import annotations

import torch

from repro.adapters import ModelAdapter
from repro.gradsim.scoring import prompt_ids

STARTERS = ("The", "Therefore", "Because", "I", "You")


@torch.no_grad()
def context_templates(adapter: ModelAdapter, tokenizer, n: int = 5, length: int = 10, top_k: int = 5,
                      sample_seed: int = 0) -> list[list[str]]:
    """MEMIT's two context types as text prefixes: ``[[""], [generated + ". ", ...]]``."""
    generator = torch.Generator().manual_seed(sample_seed)
    generated = []
    for starter in STARTERS[:n]:
        ids = torch.tensor([prompt_ids(tokenizer, starter)])  # [1, pos]
        for _ in range(length):
            top = adapter.forward(ids.to(adapter.device))[0, -1].double().cpu().topk(top_k)
            pick = torch.multinomial(top.values.softmax(-1), 1, generator=generator)
            ids = torch.cat([ids, top.indices[pick].view(1, 1)], dim=1)
        text = tokenizer.decode(ids[0], skip_special_tokens=True).strip()
        generated.append(" ".join(text.replace("{", " ").replace("}", " ").split()) + ". ")
    return [[""], generated]


def flat(contexts: list[list[str]]) -> list[str]:
    return [c for kind in contexts for c in kind]


def subject_last_index(tokenizer, text: str, subject_end: int) -> int:
    """Token index of the subject's last token in ``text`` (``subject_end``: character offset just past
    the subject): the length of the tokenised prefix ending at the subject, minus one."""
    return len(prompt_ids(tokenizer, text[:subject_end])) - 1


def mean_over_context_types(rows: torch.Tensor, contexts: list[list[str]]) -> torch.Tensor:
    """[n_contexts, d] -> [d]: the mean within each context type, then over the types (as compute_ks)."""
    means, start = [], 0
    for kind in contexts:
        means.append(rows[start : start + len(kind)].mean(0))
        start += len(kind)
    return torch.stack(means).mean(0)

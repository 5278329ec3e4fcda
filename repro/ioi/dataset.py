"""IOI prompt pairs: ``IOIPair``, a deterministic generator, and the pairs tokenised and batched by length.

Seed 000's example: normal "After John and Mary went to the store, John gave the bag to" (answer " Mary",
the indirect object IO; " John" is the subject S), corrupted "... store, Mary gave the bag to" (the second
mention of the subject, S2, swapped for IO, so the correct answer flips to " John").

Token lengths and batching. Every word the generator uses is a single token for the model's tokenizer
(``repro.ioi.vocabulary``), so all prompts of one template have one token length, their IO/S1/S2/END
tokens sit at the same positions, and a corruption never changes the length. Pairs are then batched by
token length (``tokenize_pairs``): no padding at all, so no attention-mask or position bookkeeping can go
wrong, and "the final position" is the same index for every prompt of a batch. Pairs can also come from a
file in the seed's format (``repro.ioi.pairs_file``).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

import torch

from repro.ioi.vocabulary import ORDERS, TEMPLATES, token_ids, vocabulary_for
from repro.readers import InputError

S2_SWAP = "s2_swap"  # the seed's corruption: S2 <- IO, which flips the correct answer
ABC = "abc"  # IO, S1, S2 <- three unrelated names: the sentence no longer says who the IO is
CORRUPTIONS = (S2_SWAP, ABC)
# The most pairs a run takes: 10x the seed's 100. Pairs of one token length form one batch whose clean and
# corrupted caches are held at once, ~12 MB per pair for SmolLM2 (30 layers x ~18 tokens); the largest
# batch holds about a fifth of the pairs, so 1000 pairs need ~2.5 GB of caches, beyond which a laptop swaps.
MAX_PAIRS = 1000


@dataclass(frozen=True)
class IOIPair:
    """One clean/corrupted prompt pair; ``io`` and ``s`` are the answer tokens as text (with the space)."""

    clean: str
    corrupted: str
    io: str  # the correct answer on the clean prompt
    s: str  # the subject, the wrong answer on the clean prompt
    corruption: str = S2_SWAP
    template: int = -1  # index into TEMPLATES, -1 for pairs read from a file
    order: str = ""  # "ABBA" / "BABA" for generated pairs

    def as_tuple(self) -> tuple[str, str, str, str]:
        return self.clean, self.corrupted, self.io, self.s


class PairFileError(InputError):
    """A pair from a file cannot be used: malformed, or its answers are not tokens of its prompt as tokenised;
    the message names the file or pair and the fix."""


def generate_pairs(tokenizer, n_pairs: int, seed: int = 0, corruption: str = S2_SWAP) -> list[IOIPair]:
    """``n_pairs`` pairs, a pure function of (tokenizer vocabulary, n_pairs, seed, corruption).

    Templates and orders are cycled (pair i: order i % 2, template (i // 2) % len(TEMPLATES)) so every
    template appears in both orders as evenly as ``n_pairs`` allows; names, place and object are drawn from
    ``random.Random(seed)``.
    """
    if corruption not in CORRUPTIONS:
        raise ValueError(f"Unknown corruption {corruption!r}; valid: {', '.join(CORRUPTIONS)}.")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}.")
    vocab = vocabulary_for(tokenizer, min_names=5 if corruption == ABC else 2)
    rng = random.Random(seed)
    pairs = []
    for i in range(n_pairs):
        order, t = ORDERS[i % 2], (i // 2) % len(TEMPLATES)
        io, s, *others = rng.sample(vocab.names, 5)
        place, obj = rng.choice(vocab.places), rng.choice(vocab.objects)
        clean = fill(TEMPLATES[t], order, io, s, s, place, obj)
        if corruption == S2_SWAP:
            corrupted = fill(TEMPLATES[t], order, io, s, io, place, obj)
        else:  # three names unrelated to the clean sentence, distinct from each other
            x, y, z = others
            corrupted = fill(TEMPLATES[t], order, x, y, z, place, obj)
        pairs.append(IOIPair(clean, corrupted, " " + io, " " + s, corruption, t, order))
    return pairs


def fill(template: str, order: str, io: str, s1: str, s2: str, place: str, obj: str) -> str:
    """Fill a template: ABBA puts IO first, BABA puts S1 first; ``s2`` fills the subject's second mention."""
    a, b = (io, s1) if order == "ABBA" else (s1, io)
    return template.format(A=a, B=b, S=s2, PLACE=place, OBJECT=obj)


# ---- tokenized pairs, batched by length ----


@dataclass
class PairBatch:
    """Pairs of one token length, as tensors. ``index``: each row's position in the full pair list."""

    clean: torch.Tensor  # [batch, pos]
    corrupted: torch.Tensor  # [batch, pos]
    io: torch.Tensor  # [batch] token id of the correct answer
    s: torch.Tensor  # [batch] token id of the subject
    index: list[int]

    @property
    def size(self) -> int:
        return self.clean.shape[0]

    @property
    def n_pos(self) -> int:
        return self.clean.shape[1]

    def first_difference(self) -> int:
        """First position where any clean and corrupted prompt differ: every activation before it is
        identical in the two runs (causal attention), so patching there is a no-op and can be skipped."""
        differs = (self.clean != self.corrupted).any(dim=0).nonzero()
        return int(differs[0]) if len(differs) else self.n_pos

    def to(self, device: torch.device | str) -> PairBatch:
        """The same pairs with their tensors on ``device`` (the model's)."""
        return PairBatch(self.clean.to(device), self.corrupted.to(device), self.io.to(device), self.s.to(device),
                         self.index)

    def select(self, rows: list[int]) -> PairBatch:
        keep = torch.tensor(rows, dtype=torch.long, device=self.clean.device)
        return PairBatch(
            self.clean[keep], self.corrupted[keep], self.io[keep], self.s[keep], [self.index[r] for r in rows]
        )


def prompt_token(tokenizer, text: str, prompt: list[int]) -> int | None:
    """The id of ``text`` if it is one token that occurs in ``prompt`` (token ids), else None."""
    ids = token_ids(tokenizer, text)
    return ids[0] if len(ids) == 1 and ids[0] in prompt else None


def answer_id(tokenizer, i: int, pair: IOIPair, role: str, clean: list[int]) -> int:
    """The token id of answer ``role`` ("io" or "s"), which must be one token of the clean prompt as
    tokenised: "Mary" and " Mary" are different tokens, and only the one the prompt uses (with its leading
    space) is the name the model is asked to predict; the other would silently measure another logit
    difference."""
    text = getattr(pair, role)
    if (token := prompt_token(tokenizer, text, clean)) is not None:
        return token
    n_tokens = len(token_ids(tokenizer, text))
    what = f"{n_tokens} tokens for this tokenizer" if n_tokens != 1 else "not a token of the clean prompt as tokenised"
    fixes = [c for c in (" " + text.strip(), text.strip()) if c != text and prompt_token(tokenizer, c, clean) is not None]
    hint = f"did you mean {fixes[0]!r}?" if fixes else (
        "write the name as the prompt has it, with its leading space (e.g. ' Mary'), and pick a name the "
        "tokenizer keeps whole."
    )
    raise PairFileError(
        f"Pair {i} ({pair.clean!r}): answer {role}={text!r} is {what}; the logit difference needs each answer "
        f"to be one token of the prompt: {hint}"
    )


def tokenize_pairs(tokenizer, pairs: list[IOIPair]) -> list[PairBatch]:
    """Tokenize and batch by token length; a clear error for an answer that is not one token of its clean
    prompt, or clean/corrupted prompts of different token lengths (patching position by position needs
    them aligned)."""
    if not pairs:
        raise ValueError(
            "No IOI pairs given; generate some with generate_pairs or read them with load_pairs."
        )
    groups: dict[int, list[tuple[int, list[int], list[int], int, int]]] = defaultdict(list)
    for i, pair in enumerate(pairs):
        clean, corrupted = token_ids(tokenizer, pair.clean), token_ids(tokenizer, pair.corrupted)
        answer = {role: answer_id(tokenizer, i, pair, role, clean) for role in ("io", "s")}
        if len(clean) != len(corrupted):
            raise PairFileError(
                f"Pair {i}: clean prompt {pair.clean!r} is {len(clean)} tokens but corrupted {pair.corrupted!r} is "
                f"{len(corrupted)}; patching needs equal lengths. Use replacement names that are single tokens."
            )
        groups[len(clean)].append((i, clean, corrupted, answer["io"], answer["s"]))
    batches = []
    for _, rows in sorted(groups.items()):
        batches.append(
            PairBatch(
                clean=torch.tensor([r[1] for r in rows]),
                corrupted=torch.tensor([r[2] for r in rows]),
                io=torch.tensor([r[3] for r in rows]),
                s=torch.tensor([r[4] for r in rows]),
                index=[r[0] for r in rows],
            )
        )
    return batches

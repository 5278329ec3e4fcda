"""IOI prompt pairs: a deterministic generator and a JSON reader, both producing ``IOIPair``.

Seed 000's example: normal "After John and Mary went to the store, John gave the bag to" (answer " Mary",
the indirect object IO; " John" is the subject S), corrupted "... store, Mary gave the bag to" (the second
mention of the subject, S2, swapped for IO, so the correct answer flips to " John").

Token lengths and batching. Every name, place and object used by the generator is a single token (with
its leading space) for the model's tokenizer; words that are not are dropped per tokenizer and counted. So
all prompts of one template have one token length, their IO/S1/S2/END tokens sit at the same positions,
and a corruption never changes the length. Pairs are then batched by token length (``batches_by_length``):
no padding at all, so no attention-mask or position bookkeeping can go wrong, and "the final position" is
the same index for every prompt of a batch.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

S2_SWAP = "s2_swap"  # the seed's corruption: S2 <- IO, which flips the correct answer
ABC = "abc"  # IO, S1, S2 <- three unrelated names: the sentence no longer says who the IO is
CORRUPTIONS = (S2_SWAP, ABC)
# The most pairs a run takes: 10x the seed's 100. Pairs of one token length form one batch whose clean and
# corrupted caches are held at once, ~12 MB per pair for SmolLM2 (30 layers x ~18 tokens); the largest
# batch holds about a fifth of the pairs, so 1000 pairs need ~2.5 GB of caches, beyond which a laptop swaps.
MAX_PAIRS = 1000

# {A} and {B} are the two names introduced first, {S} the second mention of the subject. ABBA: IO comes
# first (A = IO, B = S); BABA: S comes first. The seed's sentence is the first template in ABBA order.
TEMPLATES = (
    "After {A} and {B} went to the {PLACE}, {S} gave the {OBJECT} to",
    "When {A} and {B} went to the {PLACE}, {S} gave the {OBJECT} to",
    "Then, {A} and {B} went to the {PLACE}. {S} gave the {OBJECT} to",
    "Then, {A} and {B} had a lot of fun at the {PLACE}. {S} gave the {OBJECT} to",
    "Then, {A} and {B} were working at the {PLACE}. {S} decided to give the {OBJECT} to",
    "Then, {A} and {B} were thinking about going to the {PLACE}. {S} wanted to give the {OBJECT} to",
    "Then, {A} and {B} had a long argument, and afterwards {S} said to",
    "When {A} and {B} got the {OBJECT} at the {PLACE}, {S} decided to give it to",
    "While {A} and {B} were working at the {PLACE}, {S} gave the {OBJECT} to",
    "While {A} and {B} were commuting to the {PLACE}, {S} gave the {OBJECT} to",
    "After the lunch, {A} and {B} went to the {PLACE}. {S} gave the {OBJECT} to",
    "Afterwards, {A} and {B} went to the {PLACE}. {S} gave the {OBJECT} to",
    "Then, {A} and {B} had a long argument. Afterwards {S} said to",
    "Friends {A} and {B} found the {OBJECT} at the {PLACE}. {S} gave it to",
    "Yesterday {A} and {B} walked to the {PLACE}, and {S} handed the {OBJECT} to",
    "At the {PLACE}, {A} and {B} found the {OBJECT}. Then {S} passed it to",
)
ORDERS = ("ABBA", "BABA")

NAMES = [
    "Aaron",
    "Adam",
    "Alan",
    "Alex",
    "Alice",
    "Amanda",
    "Amy",
    "Andrew",
    "Angela",
    "Anna",
    "Anne",
    "Anthony",
    "Arthur",
    "Ashley",
    "Barbara",
    "Ben",
    "Benjamin",
    "Beth",
    "Betty",
    "Bill",
    "Bob",
    "Brandon",
    "Brian",
    "Bruce",
    "Carl",
    "Carol",
    "Catherine",
    "Charles",
    "Charlie",
    "Chris",
    "Christian",
    "Christina",
    "Christine",
    "Claire",
    "Craig",
    "Daniel",
    "Danny",
    "David",
    "Dennis",
    "Diana",
    "Donald",
    "Donna",
    "Dorothy",
    "Douglas",
    "Edward",
    "Elizabeth",
    "Ellen",
    "Emily",
    "Emma",
    "Eric",
    "Eva",
    "Frank",
    "Gary",
    "George",
    "Grace",
    "Greg",
    "Hannah",
    "Harry",
    "Helen",
    "Henry",
    "Ian",
    "Jack",
    "Jacob",
    "James",
    "Jane",
    "Janet",
    "Jason",
    "Jeff",
    "Jennifer",
    "Jeremy",
    "Jerry",
    "Jessica",
    "Jim",
    "Joe",
    "John",
    "Jonathan",
    "Joseph",
    "Joshua",
    "Julia",
    "Justin",
    "Karen",
    "Kate",
    "Katie",
    "Keith",
    "Kelly",
    "Kevin",
    "Kim",
    "Laura",
    "Lauren",
    "Linda",
    "Lisa",
    "Louis",
    "Lucy",
    "Luke",
    "Maria",
    "Mark",
    "Martin",
    "Mary",
    "Matt",
    "Matthew",
    "Max",
    "Megan",
    "Michael",
    "Michelle",
    "Mike",
    "Nancy",
    "Nathan",
    "Nicholas",
    "Nick",
    "Nicole",
    "Oliver",
    "Pamela",
    "Patricia",
    "Patrick",
    "Paul",
    "Peter",
    "Philip",
    "Rachel",
    "Ralph",
    "Rebecca",
    "Richard",
    "Robert",
    "Roger",
    "Ronald",
    "Rose",
    "Ruth",
    "Ryan",
    "Sam",
    "Samuel",
    "Sandra",
    "Sarah",
    "Scott",
    "Sean",
    "Sharon",
    "Simon",
    "Sophie",
    "Stephen",
    "Steve",
    "Steven",
    "Susan",
    "Thomas",
    "Tim",
    "Timothy",
    "Tom",
    "Tony",
    "Victoria",
    "Walter",
    "William",
]
PLACES = [
    "store",
    "shop",
    "school",
    "hospital",
    "station",
    "restaurant",
    "office",
    "park",
    "garden",
    "house",
    "market",
    "library",
    "church",
    "beach",
    "kitchen",
    "bank",
    "hotel",
    "museum",
    "airport",
    "river",
]
OBJECTS = [
    "bag",
    "book",
    "ring",
    "drink",
    "bottle",
    "basketball",
    "kiss",
    "computer",
    "necklace",
    "letter",
    "ball",
    "box",
    "apple",
    "cake",
    "key",
    "phone",
    "watch",
    "hat",
    "snack",
    "pen",
]


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


@dataclass(frozen=True)
class Vocabulary:
    """The words usable with one tokenizer, and how many candidates were dropped as multi-token."""

    names: tuple[str, ...]
    places: tuple[str, ...]
    objects: tuple[str, ...]
    dropped: dict[str, list[str]] = field(default_factory=dict)  # kind -> dropped words

    def report(self) -> dict[str, int]:
        return {
            "names_kept": len(self.names),
            "names_dropped": len(self.dropped.get("names", [])),
            "places_kept": len(self.places),
            "places_dropped": len(self.dropped.get("places", [])),
            "objects_kept": len(self.objects),
            "objects_dropped": len(self.dropped.get("objects", [])),
        }


def token_ids(tokenizer, text: str) -> list[int]:
    """The tokenizer's ids for ``text`` as plain text: no BOS or other special tokens, as in the seed."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def is_single_token(tokenizer, word: str) -> bool:
    return len(token_ids(tokenizer, " " + word)) == 1


def vocabulary_for(tokenizer, min_names: int = 3) -> Vocabulary:
    """Keep the names, places and objects that are one token (with a leading space) for ``tokenizer``."""
    kept, dropped = {}, {}
    for kind, words in (("names", NAMES), ("places", PLACES), ("objects", OBJECTS)):
        kept[kind] = tuple(w for w in words if is_single_token(tokenizer, w))
        dropped[kind] = [w for w in words if w not in kept[kind]]
    if len(kept["names"]) < min_names or not kept["places"] or not kept["objects"]:
        raise ValueError(
            f"Tokenizer {type(tokenizer).__name__} splits too many IOI words into several tokens "
            f"(kept {len(kept['names'])} names, {len(kept['places'])} places, {len(kept['objects'])} objects; "
            f"need >= {min_names} names and >= 1 of each other kind). Extend NAMES/PLACES/OBJECTS in "
            f"repro/ioi/dataset.py with words this tokenizer keeps whole."
        )
    return Vocabulary(kept["names"], kept["places"], kept["objects"], dropped)


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


# ---- pairs from a file ----

PAIR_KEYS = ("normal", "corrupted", "io", "s")


class PairFileError(ValueError):
    """A pairs file is unreadable or malformed; the message names the file, the entry and the fix."""


def load_pairs(path: str | Path) -> list[IOIPair]:
    """Read pairs in the seed's format: a JSON list of ``{"normal", "corrupted", "io", "s"}`` objects
    (``io``/``s``: the correct and the wrong answer, each with its leading space, e.g. " Mary"/" John"),
    optionally with ``"corruption": "s2_swap" | "abc"`` (default s2_swap, the seed's). Token-level checks
    (single-token answers, equal lengths) need the tokenizer: see ``tokenize_pairs``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise PairFileError(
            f"Cannot read IOI pairs from {path}: {err}. Give a JSON list of pair objects."
        ) from err
    if not isinstance(data, list) or not data:
        raise PairFileError(f"{path}: expected a non-empty JSON list of pair objects with keys {PAIR_KEYS}.")
    pairs = []
    for i, entry in enumerate(data):
        where = f"{path} entry {i}"
        if not isinstance(entry, dict):
            raise PairFileError(
                f"{where}: expected an object with keys {PAIR_KEYS}, got {type(entry).__name__}."
            )
        missing = [k for k in PAIR_KEYS if k not in entry]
        if missing:
            raise PairFileError(f"{where}: missing key(s) {missing}; each pair needs {PAIR_KEYS}.")
        bad = [k for k in PAIR_KEYS if not isinstance(entry[k], str) or not entry[k].strip()]
        if bad:
            raise PairFileError(f"{where}: {bad} must be non-empty strings.")
        corruption = entry.get("corruption", S2_SWAP)
        if corruption not in CORRUPTIONS:
            raise PairFileError(f"{where}: unknown corruption {corruption!r}; valid: {CORRUPTIONS}.")
        if entry["io"] == entry["s"]:
            raise PairFileError(f"{where}: io and s are both {entry['io']!r}; they must be different names.")
        pairs.append(IOIPair(entry["normal"], entry["corrupted"], entry["io"], entry["s"], corruption))
    return pairs


def save_pairs(pairs: list[IOIPair], path: str | Path) -> Path:
    """Write pairs in the format ``load_pairs`` reads."""
    path = Path(path)
    rows = [
        {"normal": p.clean, "corrupted": p.corrupted, "io": p.io, "s": p.s, "corruption": p.corruption}
        for p in pairs
    ]
    path.write_text(json.dumps(rows, indent=2) + "\n")
    return path


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

"""Knowledge pieces: cloze facts (prompt q, answer a, subject span) linked into 2-hop chains.

Two sources, each piece tagged with its chain:

- HotpotQA bridge questions (seed 001). The supporting sentence that contains the answer, cut right before
  the answer, is the hop-2 piece; its paragraph's title is the bridge entity, and a supporting sentence of
  the other paragraph that names the bridge entity, cut before it, is the hop-1 piece. The subject is the
  sentence's paragraph title (without a trailing parenthetical); when the sentence does not name it
  ("As an adult, she was named ..."), the prompt is prefixed with "<title>: " so that MEMIT has a subject
  token to look the fact up at.
- ``fixtures/gradsim_known_facts.json``: 2-hop chains of common facts (landmark -> city -> country,
  person -> country -> capital, company -> country -> language, ...) written with relation templates that
  also give paraphrases. These are filtered per model to facts the model holds (``is_known``).

A piece's answer keeps its leading space (it is the continuation of the prompt) and is never truncated:
multi-token answers score as the sum of their token log-probabilities.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

FACTS_FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "gradsim_known_facts.json"
HOTPOT = "hotpotqa"
FACTS = "facts"
MIN_PROMPT_WORDS = 3  # shorter prompts give the model nothing to go on
KNOWN_LOGPROB = -3.0  # a fixture fact is "known" when greedy decoding gives the answer or log P(a|q) >= this (P >= 5%)


class PieceError(ValueError):
    """A HotpotQA example or a facts file that cannot give knowledge pieces; the message says why."""


@dataclass(frozen=True)
class KnowledgePiece:
    piece_id: str  # "hotpotqa:<_id>:hop2", "facts:<chain>:hop1", ...
    source: str  # HOTPOT | FACTS
    chain: str  # pieces of one 2-hop chain share it
    hop: int  # 1: subject -> bridge entity; 2: bridge entity -> answer
    prompt: str  # q, ending right before the answer
    answer: str  # a, with its leading space
    subject: str  # a span of the prompt; MEMIT edits the fact at its last token
    relation: str | None = None  # relation template id (facts only)
    kind: str = "entity"  # answer type: counterfactual targets are answers of the same kind
    paraphrases: tuple[str, ...] = ()  # the same fact in other words (prompts), for generalisation

    @property
    def subject_end(self) -> int:
        """Character offset just past the subject's (first) occurrence in the prompt."""
        return self.prompt.index(self.subject) + len(self.subject)


@dataclass
class PieceSet:
    """Pieces from one source plus the book-keeping of what was dropped and why."""

    pieces: list[KnowledgePiece] = field(default_factory=list)
    read: int = 0  # examples (HotpotQA) or chains (facts) read
    drops: Counter = field(default_factory=Counter)  # reason -> count (pieces or examples, as named)

    def report(self) -> dict:
        return {"read": self.read, "pieces": len(self.pieces), "dropped": dict(sorted(self.drops.items()))}


# ---- HotpotQA ----

HOTPOT_KEYS = ("_id", "question", "answer", "supporting_facts", "context")


def check_hotpot_examples(data, where: str = "HotpotQA data") -> list[dict]:
    """The examples of a HotpotQA file in the original format, or PieceError naming what is malformed."""
    if not isinstance(data, list) or not data:
        raise PieceError(f"{where}: expected a non-empty JSON list of HotpotQA examples, got {type(data).__name__}.")
    for n, ex in enumerate(data):
        if not isinstance(ex, dict):
            raise PieceError(f"{where}: example {n} is a {type(ex).__name__}, not an object.")
        missing = [k for k in HOTPOT_KEYS if k not in ex]
        if missing:
            raise PieceError(f"{where}: example {n} lacks {missing}; HotpotQA examples have {list(HOTPOT_KEYS)}.")
        try:
            titles = {str(t): list(s) for t, s in ex["context"]}
            for title, sent in ex["supporting_facts"]:
                if title not in titles or not 0 <= int(sent) < len(titles[title]):
                    raise PieceError(f"{where}: example {n} ({ex['_id']}) cites supporting fact [{title!r}, {sent}], "
                                     "which is not in its context.")
        except (TypeError, ValueError) as err:
            if isinstance(err, PieceError):
                raise
            raise PieceError(f"{where}: example {n} has a malformed 'context' or 'supporting_facts' ({err}); "
                             "each is a list of [title, sentences] / [title, sentence index].") from None
    return data


def read_hotpot_file(path: str | Path) -> list[dict]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise PieceError(f"HotpotQA file not found: {path}; give a file in the original HotpotQA JSON format.")
    try:
        data = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PieceError(f"{path} is not valid JSON ({err}); give a file in the original HotpotQA JSON format.") from None
    return check_hotpot_examples(data, str(path))


def _entity(title: str) -> str:
    """A paragraph title as an entity name: 'Winner (band)' -> 'Winner'."""
    return re.sub(r"\s*\([^)]*\)\s*$", "", title).strip()


def _cloze(sentence: str, answer: str, title: str) -> tuple[str, str, str] | None:
    """(prompt, answer as written, subject) cutting ``sentence`` before ``answer``, or None if it is absent."""
    sentence = " ".join(sentence.split())
    at = sentence.lower().find(answer.lower())
    while at == 0:  # an answer that opens the sentence leaves no prompt; look for a later mention
        at = sentence.lower().find(answer.lower(), 1)
    if at < 0:
        return None
    prompt = sentence[:at].rstrip(' "(“')
    written = sentence[at : at + len(answer)]
    subject = _entity(title)
    if subject.lower() == written.lower():
        return None  # a fact about X whose answer is X says nothing
    if subject not in prompt:
        prompt = f"{subject}: {prompt}"
    if len(prompt.split()) < MIN_PROMPT_WORDS:
        return None
    return prompt, " " + written, subject


def _answer_kind(answer: str) -> str:
    return "number" if re.search(r"\d", answer) else "entity"


def cloze_pieces(example: dict) -> list[KnowledgePiece]:
    """The hop-2 piece (and the hop-1 piece, where the other paragraph names the bridge entity) of one
    HotpotQA example; PieceError with the reason when there is none."""
    answer = str(example["answer"]).strip()
    if answer.lower() in {"yes", "no"}:
        raise PieceError("yes/no answer")
    context = {str(t): list(s) for t, s in example["context"]}
    facts = [(str(t), int(i), context[str(t)][int(i)]) for t, i in example["supporting_facts"]]
    chain = f"{HOTPOT}:{example['_id']}"
    hop2 = next(((t, c) for t, _, s in facts if (c := _cloze(s, answer, t))), None)
    if hop2 is None:
        if not any(answer.lower() in s.lower() for _, _, s in facts):
            raise PieceError("answer not in supporting facts")
        raise PieceError("answer only where no cloze prompt is left")
    bridge_title, (prompt, written, subject) = hop2
    pieces = [KnowledgePiece(f"{chain}:hop2", HOTPOT, chain, 2, prompt, written, subject, kind=_answer_kind(written))]
    bridge = _entity(bridge_title)
    hop1 = next((c for t, _, s in facts if t != bridge_title and (c := _cloze(s, bridge, t))), None)
    if hop1 is not None:
        prompt, written, subject = hop1
        pieces.insert(0, KnowledgePiece(f"{chain}:hop1", HOTPOT, chain, 1, prompt, written, subject, kind="bridge"))
    return pieces


def hotpot_pieces(examples: list[dict], max_examples: int | None = None) -> PieceSet:
    """Pieces from the first ``max_examples`` examples; the reasons for every example or hop left out."""
    out = PieceSet()
    for example in examples[:max_examples]:
        out.read += 1
        try:
            pieces = cloze_pieces(example)
        except PieceError as err:
            out.drops[f"example: {err}"] += 1
            continue
        if len(pieces) == 1:
            out.drops["hop 1: the other paragraph does not name the bridge entity"] += 1
        out.pieces.extend(pieces)
    return out


# ---- the known-facts fixture ----


def read_facts(path: str | Path = FACTS_FIXTURE) -> dict:
    try:
        data = json.loads(Path(path).read_text("utf-8"))
        relations, chains = data["relations"], data["chains"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise PieceError(f"Known-facts file {path} is unreadable or lacks 'relations'/'chains' ({err}).") from None
    for n, chain in enumerate(chains):
        if len(chain) != 2 or chain[0][2] != chain[1][0] or any(hop[1] not in relations for hop in chain):
            raise PieceError(f"{path}: chain {n} must be two [subject, relation, answer] hops, the first's answer "
                             "being the second's subject, with relations from 'relations'.")
    return data


def fact_pieces(max_chains: int | None = None, path: str | Path = FACTS_FIXTURE) -> PieceSet:
    """Every hop of the fixture's chains as a piece (before the per-model ``is_known`` filter)."""
    data = read_facts(path)
    out = PieceSet()
    for n, chain in enumerate(data["chains"][:max_chains]):
        out.read += 1
        chain_id = f"{FACTS}:{n}:{chain[0][0]}"
        for hop, (subject, relation, answer) in enumerate(chain, start=1):
            rel = data["relations"][relation]
            prompts = [t.replace("{}", subject) for t in [rel["template"], *rel.get("paraphrases", [])]]
            out.pieces.append(KnowledgePiece(
                f"{chain_id}:hop{hop}", FACTS, chain_id, hop, prompts[0], " " + answer, subject,
                relation=relation, kind=rel["kind"], paraphrases=tuple(prompts[1:]),
            ))
    return out


def control_pieces(path: str | Path = FACTS_FIXTURE) -> list[KnowledgePiece]:
    """Unrelated facts scored after every edit (specificity): an edit should leave them alone."""
    return [
        KnowledgePiece(f"control:{n}", "control", f"control:{n}", 1, prompt, " " + answer, subject)
        for n, (prompt, subject, answer) in enumerate(read_facts(path).get("controls", []))
    ]


def is_known(logprob: float, greedy_match: bool) -> bool:
    """The fixture's filter: the model produces the answer greedily, or gives it probability >= 5%."""
    return greedy_match or logprob >= KNOWN_LOGPROB

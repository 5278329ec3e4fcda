"""Knowledge pieces: cloze facts (prompt q, answer a, subject span), from two sources.

- ``fixtures/gradsim_known_facts.json``: common facts, one relation template each (with paraphrases for
  generalisation), typed by the kind of their answer (city, country, language, person, year, ...). A
  subject appears under several relations (France: capital, language, continent, currency) and a relation
  has many subjects, so GradSim can vary apart from the template. Two facts are *linked* (a 2-hop chain,
  as in the seed) when one's answer is the other's subject: Eiffel Tower -> Paris -> France. These pieces
  are filtered per model to facts the model knows (``is_known``) and are the ones MEMIT edits.
- HotpotQA bridge questions (seed 001). The supporting sentence that contains the answer, cut right before
  the answer, is the hop-2 piece; its paragraph's title is the bridge entity, and a supporting sentence of
  the other paragraph that names the bridge entity, cut before it, is the hop-1 piece. The subject is the
  sentence's paragraph title (without a trailing parenthetical); when the sentence does not name it, the
  prompt is prefixed with "<title>: " so that MEMIT has a subject token to look the fact up at. They pass
  the same knowledge check; few do for a small model, and their answers cannot be typed for a same-kind
  counterfactual, so they stay descriptive (``run.py`` says how many and why).

A piece's answer keeps its leading space (it is the continuation of the prompt) and is never truncated:
multi-token answers score as the sum of their token log-probabilities.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from repro.readers import InputError, check_type, read_json, records
from repro.readers import field as record_field

FACTS_FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "gradsim_known_facts.json"
HOTPOT = "hotpotqa"
FACTS = "facts"
MIN_PROMPT_WORDS = 3  # shorter prompts give the model nothing to go on
KNOWN_LOGPROB = -3.0  # a piece is "known" when greedy decoding gives the answer or log P(a|q) >= this (P >= 5%)


class PieceError(ValueError):
    """A HotpotQA example that gives no knowledge piece, or a malformed facts fixture; the message says why."""


@dataclass(frozen=True)
class KnowledgePiece:
    piece_id: str  # "hotpotqa:<_id>:hop2", "facts:<relation>:<subject>", ...
    source: str  # HOTPOT | FACTS
    chain: str | None  # HotpotQA: the example both hops come from; facts: None (links come from answers)
    hop: int  # HotpotQA: 1 (subject -> bridge entity) or 2 (bridge entity -> answer); facts: 1
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
    read: int = 0  # examples (HotpotQA) or facts read
    drops: Counter = field(default_factory=Counter)  # reason -> count (pieces or examples, as named)

    def report(self) -> dict:
        return {"read": self.read, "pieces": len(self.pieces), "dropped": dict(sorted(self.drops.items()))}


# ---- HotpotQA ----


def check_hotpot_examples(data, path: str | Path) -> list[dict]:
    """The examples of a HotpotQA file in the original format; an ``InputError`` naming the file, the record
    and the field for anything else (a sentence that is a number, a supporting fact outside the context)."""
    for where, ex in records(data, path, what="HotpotQA examples"):
        ex_id = record_field(ex, "_id", str, where)
        where = f"{where} ({ex_id})"
        record_field(ex, "answer", str, where)
        context = record_field(ex, "context", list, where)
        titles = {}
        for k, paragraph in enumerate(context):
            at = f"{where}: field 'context' item {k}"
            if not isinstance(paragraph, list) or len(paragraph) != 2:
                raise InputError(f"{at} must be [title, [sentences]], got {str(paragraph)[:60]}.")
            title, sentences = check_type(paragraph[0], str, f"{at} title"), check_type(paragraph[1], list, f"{at} sentences")
            for s, sentence in enumerate(sentences):
                check_type(sentence, str, f"{at} sentence {s}")
            titles[title] = len(sentences)
        for k, fact in enumerate(record_field(ex, "supporting_facts", list, where)):
            at = f"{where}: field 'supporting_facts' item {k}"
            if not isinstance(fact, list) or len(fact) != 2:
                raise InputError(f"{at} must be [title, sentence index], got {str(fact)[:60]}.")
            title, sent = check_type(fact[0], str, f"{at} title"), check_type(fact[1], int, f"{at} sentence index")
            if title not in titles or not 0 <= sent < titles[title]:
                raise InputError(f"{at} cites [{title!r}, {sent}], which is not in the example's context.")
    return data


def read_hotpot_file(path: str | Path) -> list[dict]:
    return check_hotpot_examples(read_json(path, what="HotpotQA file"), Path(path).expanduser())


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
    pieces = [KnowledgePiece(f"{chain}:hop2", HOTPOT, chain, 2, prompt, written, subject)]
    bridge = _entity(bridge_title)
    hop1 = next((c for t, _, s in facts if t != bridge_title and (c := _cloze(s, bridge, t))), None)
    if hop1 is not None:
        prompt, written, subject = hop1
        pieces.insert(0, KnowledgePiece(f"{chain}:hop1", HOTPOT, chain, 1, prompt, written, subject))
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
    """The fixture, checked: relations with a template holding '{}' and a kind, facts [subject, answer] per
    relation, counterfactual targets for every kind used."""
    data = read_json(path, what="known-facts file")
    if not isinstance(data, dict) or not {"relations", "facts", "targets"} <= data.keys():
        raise PieceError(f"Known-facts file {path} must be an object with 'relations', 'facts' and 'targets'.")
    relations, facts, targets = data["relations"], data["facts"], data["targets"]
    for name, rows in facts.items():
        rel = relations.get(name)
        if not isinstance(rel, dict) or "{}" not in str(rel.get("template")) or rel.get("kind") not in targets:
            raise PieceError(f"{path}: relation {name!r} needs a template with '{{}}' and a kind listed in 'targets'.")
        if not all(isinstance(r, list) and len(r) == 2 and all(isinstance(x, str) for x in r) for r in rows):
            raise PieceError(f"{path}: facts of {name!r} must be [subject, answer] string pairs.")
    return data


def fact_pieces(path: str | Path = FACTS_FIXTURE) -> PieceSet:
    """Every fact of the fixture as a piece (before the per-model ``is_known`` filter), in file order."""
    data = read_facts(path)
    out = PieceSet()
    for relation, rows in data["facts"].items():
        rel = data["relations"][relation]
        for subject, answer in rows:
            out.read += 1
            prompts = [t.replace("{}", subject) for t in [rel["template"], *rel.get("paraphrases", [])]]
            out.pieces.append(KnowledgePiece(
                f"{FACTS}:{relation}:{subject}", FACTS, None, 1, prompts[0], " " + answer, subject,
                relation=relation, kind=rel["kind"], paraphrases=tuple(prompts[1:]),
            ))
    return out


def counterfactual_targets(path: str | Path = FACTS_FIXTURE) -> dict[str, list[str]]:
    """kind -> the answers an edit may write for a piece of that kind (each with its leading space)."""
    return {kind: [" " + t for t in values] for kind, values in read_facts(path)["targets"].items()}


def control_pieces(path: str | Path = FACTS_FIXTURE) -> list[KnowledgePiece]:
    """Unrelated facts scored after every edit (specificity): an edit should leave them alone."""
    return [
        KnowledgePiece(f"control:{n}", "control", None, 1, prompt, " " + answer, subject)
        for n, (prompt, subject, answer) in enumerate(read_facts(path).get("controls", []))
    ]


def is_known(logprob: float, greedy_match: bool) -> bool:
    """The knowledge check: the model produces the answer greedily, or gives it probability >= 5%."""
    return greedy_match or logprob >= KNOWN_LOGPROB

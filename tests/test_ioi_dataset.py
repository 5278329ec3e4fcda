"""IOI pairs: the generator is deterministic and correct, the JSON reader fails loudly on bad input."""

import json
from pathlib import Path

import pytest

from repro.ioi.dataset import ABC, S2_SWAP, IOIPair, PairFileError, generate_pairs, tokenize_pairs
from repro.ioi.pairs_file import load_pairs, save_pairs
from repro.ioi.vocabulary import NAMES, ORDERS, TEMPLATES, vocabulary_for
from repro.models import gpt2_tokenizer
from repro.readers import InputError

FIXTURE = Path(__file__).parent.parent / "fixtures" / "ioi_seed_pairs.json"


@pytest.fixture(scope="module")
def tokenizer():
    return gpt2_tokenizer()


class SplittingTokenizer:
    """Wraps a tokenizer and splits two names into two tokens, like a smaller vocabulary would."""

    SPLIT = {" Mary", " Zachariah"}

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, text, add_special_tokens=False):
        ids = self.inner(text, add_special_tokens=False)["input_ids"]
        return {"input_ids": ids + ids if text in self.SPLIT else ids}


def test_generator_is_deterministic_and_seeded(tokenizer):
    assert generate_pairs(tokenizer, 30, seed=3) == generate_pairs(tokenizer, 30, seed=3)
    assert generate_pairs(tokenizer, 30, seed=3) != generate_pairs(tokenizer, 30, seed=4)


def test_enough_templates_orders_and_candidate_names(tokenizer):
    assert len(TEMPLATES) >= 15 and len(NAMES) >= 100 and len(set(NAMES)) == len(NAMES)
    pairs = generate_pairs(tokenizer, 2 * len(TEMPLATES))
    assert {(p.template, p.order) for p in pairs} == {(t, o) for t in range(len(TEMPLATES)) for o in ORDERS}
    assert pairs[0].clean.startswith("After ") and pairs[0].clean.endswith(
        " gave the " + pairs[0].clean.split(" the ")[-1]
    )


def test_multi_token_words_are_dropped_and_counted(tokenizer):
    vocab = vocabulary_for(SplittingTokenizer(tokenizer))
    assert "Mary" not in vocab.names and "Mary" in vocab.dropped["names"]
    assert vocab.report()["names_dropped"] == 1 and vocab.report()["names_kept"] == len(NAMES) - 1
    for pair in generate_pairs(SplittingTokenizer(tokenizer), 40):
        assert "Mary" not in pair.clean + pair.corrupted


def _names(text):
    return [w.strip(",.") for w in text.split() if w.strip(",.") in NAMES]


def test_s2_swap_flips_the_answer(tokenizer):
    for pair in generate_pairs(tokenizer, 40, corruption=S2_SWAP):
        io, s = pair.io.strip(), pair.s.strip()
        clean, corrupted = _names(pair.clean), _names(pair.corrupted)
        # clean: IO once, S twice -> the answer is IO; corrupted: S2 became IO -> the answer is S
        assert sorted(clean) == sorted([io, s, s]) and clean[2] == s
        assert sorted(corrupted) == sorted([io, io, s]) and corrupted[2] == io
        # exactly one word differs: the subject's second mention, now the indirect object
        changed = [(a, b) for a, b in zip(pair.clean.split(), pair.corrupted.split(), strict=True) if a != b]
        assert changed == [(s, io)]


def test_abc_uses_three_distinct_unrelated_names(tokenizer):
    for pair in generate_pairs(tokenizer, 40, corruption=ABC):
        clean, corrupted = _names(pair.clean), _names(pair.corrupted)
        assert len(corrupted) == 3 and len(set(corrupted)) == 3
        assert not set(corrupted) & {pair.io.strip(), pair.s.strip()}
        assert len(clean) == 3


def test_corruptions_keep_token_length_and_batches_share_length(tokenizer):
    for corruption in (S2_SWAP, ABC):
        batches = tokenize_pairs(tokenizer, generate_pairs(tokenizer, 40, corruption=corruption))
        assert sum(b.size for b in batches) == 40
        for batch in batches:
            assert batch.clean.shape == batch.corrupted.shape
            assert (
                batch.clean[:, : batch.first_difference()] == batch.corrupted[:, : batch.first_difference()]
            ).all()


def test_seed_fixture_loads_and_tokenizes(tokenizer):
    pairs = load_pairs(FIXTURE)
    assert pairs[0].clean == "After John and Mary went to the store, John gave the bag to"
    assert pairs[0].corrupted == "After John and Mary went to the store, Mary gave the bag to"
    assert (pairs[0].io, pairs[0].s) == (" Mary", " John")
    (batch,) = tokenize_pairs(tokenizer, pairs[:1])
    assert batch.io.tolist() == tokenizer(" Mary")["input_ids"]


def test_save_and_load_round_trip(tokenizer, tmp_path):
    pairs = generate_pairs(tokenizer, 5, corruption=ABC)
    loaded = load_pairs(save_pairs(pairs, tmp_path / "p.json"))
    assert [p.as_tuple() for p in loaded] == [p.as_tuple() for p in pairs]
    assert {p.corruption for p in loaded} == {ABC}


SEED = {
    "normal": "After John and Mary went to the store, John gave the bag to",
    "corrupted": "After John and Mary went to the store, Mary gave the bag to",
    "io": " Mary",
    "s": " John",
}


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", r"IOI pairs file .*pairs.json is not valid JSON \(Expecting property name"),
        (b"[\xff]", r"IOI pairs file .*pairs.json is not UTF-8 text \(byte 0xff on line 1\)"),
        (json.dumps({"pairs": [SEED]}), "expected a non-empty JSON list of pair objects with keys normal, corrupted, io, s, got an object"),
        (json.dumps([]), "expected a non-empty JSON list"),
        (json.dumps([SEED, "text"]), r"pairs.json entry 1 must be an object, got a string"),
        (json.dumps([{k: v for k, v in SEED.items() if k != "s"}]), r"entry 0: missing field 's'"),
        (json.dumps([{**SEED, "io": 5}]), r"entry 0: field 'io' must be a string, got an integer 5"),
        (json.dumps([{**SEED, "io": ""}]), r"\['io'\] must be non-empty strings"),
        (json.dumps([{**SEED, "s": " Mary"}]), "must be different names"),
        (json.dumps([{**SEED, "corruption": "shuffle"}]), "unknown corruption"),
        (json.dumps([{**SEED, "corruption": ["abc"]}]), r"field 'corruption' must be a string, got a list"),
    ],
)
def test_malformed_pair_files_name_the_file_the_entry_and_the_field(tmp_path, content, message):
    path = tmp_path / "pairs.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError, match=message):
        load_pairs(path)


def test_multi_token_targets_and_length_mismatch_are_rejected(tokenizer, tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([{**SEED, "io": " Maryanneliese"}]))
    with pytest.raises(PairFileError, match=r"answer io=' Maryanneliese' is \d+ tokens"):
        tokenize_pairs(tokenizer, load_pairs(path))
    path.write_text(
        json.dumps([{**SEED, "corrupted": SEED["corrupted"].replace("Mary gave", "Maryanneliese gave")}])
    )
    with pytest.raises(PairFileError, match="is 14 tokens but corrupted"):
        tokenize_pairs(tokenizer, load_pairs(path))


@pytest.mark.parametrize(
    "entry, message",
    [
        ({**SEED, "io": "Mary"}, r"answer io='Mary' is not a token of the clean prompt as tokenised; .* did you mean ' Mary'\?"),
        ({**SEED, "s": "John "}, r"answer s='John ' is 2 tokens for this tokenizer; .* did you mean ' John'\?"),
        ({**SEED, "io": " Alice"}, r"answer io=' Alice' is not a token of the clean prompt .* with its leading space"),
    ],
)
def test_an_answer_must_be_a_token_of_its_prompt(tokenizer, entry, message):
    """'Mary' (no space) is a single GPT-2 token too, but not the one the prompt uses: accepted, it would
    silently measure the logit difference of another token."""
    with pytest.raises(PairFileError, match=message):
        tokenize_pairs(tokenizer, [IOIPair(entry["normal"], entry["corrupted"], entry["io"], entry["s"])])

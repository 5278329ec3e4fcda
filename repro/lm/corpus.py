"""Word-level corpora: tokenisation, a vocabulary from the training split, batchify and BPTT windows.

The standard language-modelling preparation (Mikolov's PTB, pytorch/examples' ``data.py``): every line is
split on whitespace and ends with ``<eos>``; ``<unk>`` is kept as an ordinary word; ids are given in order
of first appearance in the training split. Text from another corpus is read with the same vocabulary and
its out-of-vocabulary words become ``<unk>`` (the seed's Part B, setting 2).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from repro.readers import read_text

EOS, UNK = "<eos>", "<unk>"
CORPORA = ("ptb", "wikitext2")
REQUIRED_SPLITS = ("train", "valid")


class CorpusError(ValueError):
    """A corpus that cannot be used (missing split, no tokens); the message says which and where."""


def words(lines: list[str]) -> list[str]:
    """Whitespace-split words, ``<eos>`` after every line (blank lines too, as pytorch/examples counts them)."""
    return [w for line in lines for w in [*line.split(), EOS]]


@dataclass(frozen=True)
class Vocabulary:
    itos: tuple[str, ...]  # id -> word

    @classmethod
    def from_words(cls, tokens: list[str]) -> Vocabulary:
        """Ids in order of first appearance; ``<eos>`` and ``<unk>`` are always present."""
        return cls(tuple(dict.fromkeys([*tokens, EOS, UNK])))

    def __len__(self) -> int:
        return len(self.itos)

    @cached_property
    def stoi(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.itos)}

    def encode(self, tokens: list[str]) -> torch.Tensor:
        """Word ids [n] (int64); unknown words -> ``<unk>``."""
        stoi, unk = self.stoi, self.stoi[UNK]
        return torch.tensor([stoi.get(w, unk) for w in tokens], dtype=torch.long)

    def decode(self, ids) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    @cached_property
    def sha256(self) -> str:
        """Fingerprint of the words in id order: a checkpoint names the vocabulary it was trained with."""
        return hashlib.sha256("\n".join(self.itos).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Corpus:
    name: str
    vocab: Vocabulary
    splits: dict[str, torch.Tensor]  # split -> ids [n]


def oov_rate(vocab: Vocabulary, tokens: list[str]) -> float:
    """Share of ``tokens`` missing from ``vocab`` (read as ``<unk>``)."""
    stoi = vocab.stoi
    return sum(w not in stoi for w in tokens) / max(len(tokens), 1)


def corpus_lines(name: str) -> dict[str, list[str]]:
    """Lines per split of a named corpus from the (checksummed) data directory, or of a folder holding
    ``train.txt``, ``valid.txt`` and optionally ``test.txt``."""
    from repro import assets

    if name == "ptb":
        return assets.ptb()
    if name == "wikitext2":
        return assets.wikitext2()
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise CorpusError(f"Unknown corpus {name!r}: use one of {', '.join(CORPORA)} or a folder with train.txt and valid.txt.")
    out = {}
    for split in ("train", "valid", "test"):
        path = folder / f"{split}.txt"
        if path.is_file():
            out[split] = read_text(path, what="corpus file").splitlines()
        elif split in REQUIRED_SPLITS:
            raise CorpusError(f"Corpus folder {folder} has no {split} split: looked for {path}; add that file.")
    return out


def build_corpus(name: str, lines: dict[str, list[str]]) -> Corpus:
    """Vocabulary from the training split; every split encoded with it. Refuses a missing or empty split."""
    for split in REQUIRED_SPLITS:
        if split not in lines:
            raise CorpusError(f"Corpus {name!r} has no {split!r} split (it has: {', '.join(lines) or 'none'}).")
    tokens = {split: words(split_lines) for split, split_lines in lines.items()}
    for split, toks in tokens.items():
        if not [w for w in toks if w != EOS]:
            raise CorpusError(f"Corpus {name!r}: the {split!r} split has no words; it needs text, one sentence a line.")
    vocab = Vocabulary.from_words(tokens["train"])
    return Corpus(name, vocab, {split: vocab.encode(toks) for split, toks in tokens.items()})


def load_corpus(name: str) -> Corpus:
    return build_corpus(name, corpus_lines(name))


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """[n] -> [batch, n // batch]: the stream cut into ``batch_size`` contiguous rows (the tail that does
    not fill a row is dropped), so row b continues row b of the previous window."""
    if batch_size < 1:
        raise ValueError(f"batch size {batch_size} must be at least 1")
    steps = ids.numel() // batch_size
    if steps < 2:
        raise CorpusError(f"{ids.numel()} tokens are too few for batches of {batch_size} rows (need 2 per row).")
    return ids[: steps * batch_size].view(batch_size, steps)


def window(data: torch.Tensor, seq_len: int, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``i``-th BPTT window of batchified data [batch, steps]: (inputs [batch, <= seq_len], targets shifted by one)."""
    start = i * seq_len
    end = min(start + seq_len, data.shape[1] - 1)
    return data[:, start:end], data[:, start + 1 : end + 1]


def windows(data: torch.Tensor, seq_len: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every BPTT window of batchified data [batch, steps], in order."""
    for i in range(n_windows(data, seq_len)):
        yield window(data, seq_len, i)


def n_windows(data: torch.Tensor, seq_len: int) -> int:
    return -(-(data.shape[1] - 1) // seq_len)


# WikiText-2 in Penn Treebank's conventions (Mikolov's PTB: lower case, punctuation dropped, numbers as N, one
# sentence a line), so a PTB model reads it as text of its own kind and its <unk> rate measures vocabulary, not
# conventions (the seed's Part B read WikiText-2 through models of each corpus).
_JOINERS = {"@-@": "-", "@,@": ",", "@.@": "."}  # WikiText splits "well-known" as "well @-@ known"
_NUMBER = re.compile(r"^\d+([.,]\d+)*$")  # PTB keeps "1980s", "13th", "30-year" as words
_SENTENCE_END = {".", "?", "!"}
_PTB_SYMBOLS = {"$", "&", "'", "#"}  # the punctuation-like tokens PTB keeps


def ptb_conventions(lines: list[str]) -> list[str]:
    """WikiText lines (paragraphs, headings ``= = Title = =``) rewritten as PTB sentences, one a line: headings
    dropped, split hyphens and number separators re-joined, lower case, numbers and ``%`` as ``N`` (PTB
    writes "5 %" as "N N"), other punctuation dropped, a line ended at each ``.``, ``?`` or ``!``."""
    out: list[str] = []
    for line in lines:
        tokens = line.split()
        if not tokens or (tokens[0] == "=" and tokens[-1] == "="):
            continue
        joined: list[str] = []
        glue = False
        for t in tokens:
            if t in _JOINERS and joined:
                joined[-1] += _JOINERS[t]
                glue = True
            elif glue:
                joined[-1] += t
                glue = False
            else:
                joined.append(t)
        sentence: list[str] = []
        for t in joined:
            if t in _SENTENCE_END:
                if sentence:
                    out.append(" ".join(sentence))
                sentence = []
            elif t == UNK:
                sentence.append(t)
            elif _NUMBER.match(t) or t == "%":
                sentence.append("N")
            elif t in _PTB_SYMBOLS or any(c.isalnum() for c in t):
                sentence.append(t.lower())
        if sentence:
            out.append(" ".join(sentence))
    return out

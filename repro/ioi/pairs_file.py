"""IOI pairs in the seed's file format: a JSON list of ``{"normal", "corrupted", "io", "s"}`` objects.

Read through the suite's one checked reader (``repro.readers``): a file that is missing, not UTF-8, not
JSON, not a list of objects, or has a field of the wrong type is one line naming the file, the entry and
the field. Token-level checks (single-token answers, equal lengths) need the tokenizer: see
``repro.ioi.dataset.tokenize_pairs``.
"""

from __future__ import annotations

import json
from pathlib import Path

from repro.ioi.dataset import CORRUPTIONS, S2_SWAP, IOIPair, PairFileError
from repro.readers import field, read_json, records

PAIR_KEYS = ("normal", "corrupted", "io", "s")


def load_pairs(path: str | Path) -> list[IOIPair]:
    """Pairs from ``path``: ``io``/``s`` are the correct and the wrong answer, each with its leading space
    (e.g. " Mary"/" John"); an optional ``"corruption": "s2_swap" | "abc"`` (default s2_swap, the seed's)."""
    path = Path(path)
    data = read_json(path, what="IOI pairs file")
    pairs = []
    for where, entry in records(data, path, what=f"pair objects with keys {', '.join(PAIR_KEYS)}"):
        text = {key: field(entry, key, str, where) for key in PAIR_KEYS}
        empty = [key for key, value in text.items() if not value.strip()]
        if empty:
            raise PairFileError(f"{where}: field(s) {empty} must be non-empty strings.")
        corruption = field(entry, "corruption", str, where, default=S2_SWAP)
        if corruption not in CORRUPTIONS:
            raise PairFileError(f"{where}: unknown corruption {corruption!r}; valid: {', '.join(CORRUPTIONS)}.")
        if text["io"] == text["s"]:
            raise PairFileError(f"{where}: io and s are both {text['io']!r}; they must be different names.")
        pairs.append(IOIPair(text["normal"], text["corrupted"], text["io"], text["s"], corruption))
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

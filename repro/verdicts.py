"""Claims and verdicts: what a claim says, and what an experiment measured about it.

A claim module's docstring is the single source of its published text: ``Claim.parse`` reads the
sections below from it, so the report quotes exactly what the reader of the test sees.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol, runtime_checkable


class Verdict(str, Enum):
    REPRODUCED = "REPRODUCED"
    PARTIAL = "PARTIAL"
    NOT_REPRODUCED = "NOT_REPRODUCED"
    NOT_RUN = "NOT_RUN"  # the experiment could not run here (e.g. weights unavailable); the reason says why


# Section headers of a claim module docstring, in order, mapped to Claim fields.
SECTIONS = {
    "Claim as published": "original",
    "In English": "english",
    "Source": "source",
    "Method": "method",
    "Reproduced when": "rule",
}
_HEADER = re.compile(rf"^({'|'.join(SECTIONS)}):?\s*$")


@dataclass(frozen=True)
class Claim:
    key: str  # e.g. "split_learning"; names result files and snapshot folders
    number: int  # the claim's number in the mission statement
    title: str  # first docstring line
    original: str
    english: str
    source: str
    method: str
    rule: str

    @classmethod
    def parse(cls, docstring: str | None, *, key: str, number: int) -> Claim:
        """Read a claim from a module docstring with the sections in ``SECTIONS``."""
        lines = inspect.cleandoc(docstring or "").splitlines()
        if not lines:
            raise ValueError(f"Claim {key!r}: the module has no docstring; it must state the claim.")
        sections: dict[str, list[str]] = {}
        current = None
        for line in lines[1:]:
            if match := _HEADER.match(line):
                current = SECTIONS[match.group(1)]
                sections[current] = []
            elif current is not None:
                sections[current].append(line.strip())
        missing = [h for h, f in SECTIONS.items() if not " ".join(sections.get(f, [])).strip()]
        if missing:
            raise ValueError(f"Claim {key!r}: docstring lacks the section(s) {missing}; expected headers {list(SECTIONS)}.")
        text = {f: "\n".join(body).strip() for f, body in sections.items()}
        return cls(key=key, number=number, title=lines[0].strip(), **text)


@dataclass(frozen=True)
class KeyNumber:
    """The one number a reader compares first: ours next to the published one."""

    name: str
    ours: float | None
    published: float | str | None
    unit: str = ""


@dataclass
class Measurement:
    """What an experiment returns for the record: its verdict and the evidence behind it."""

    verdict: Verdict
    key_number: KeyNumber
    criteria: dict = field(default_factory=dict)  # the values the verdict rule looked at
    numbers: dict = field(default_factory=dict)  # everything else worth reporting (scalars or lists of rows)
    published: dict = field(default_factory=dict)  # the source's numbers, for comparison
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why the verdict is what it is; caveats


@runtime_checkable
class ClaimResult(Protocol):
    """What every claim's ``run_<claim>`` returns, and all that ``claims/conftest.py`` relies on.

    ``measurement()`` is the record for the report (verdict, key number, criteria, numbers, figures,
    notes); ``snapshot()`` holds only numbers that are the same on every run, thread count and machine,
    rounded with ``repro.snapshots.rounded`` (never timings).
    """

    def measurement(self) -> Measurement: ...

    def snapshot(self) -> dict: ...

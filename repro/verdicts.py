"""Claims and verdicts: what a claim says, what an experiment measured about it, and how sure it is.

A claim module's docstring is the single source of its published text: ``Claim.parse`` reads the
sections below from it, so the report quotes exactly what the reader of the test sees.

A verdict is decided from evidence, as replication practice does (FReD's replication-success criteria;
Pawel, Heyard, Micheloud & Held on absence of evidence vs evidence of absence): each part of a claim is an
``Estimate`` with a 95% ``Interval`` over its independent units, compared with a ``Region`` declared in the
claim's docstring before measuring. Inside the region: REPRODUCED; entirely outside (every effect worth
caring about excluded): NOT_REPRODUCED; straddling a boundary: INCONCLUSIVE. ``Gate``s are the controls
that make a run count (a baseline beaten, an edit that takes); a failed gate makes the verdict
INCONCLUSIVE, never NOT_REPRODUCED. ``judge`` combines parts and gates into the ``Ruling`` a
``Measurement`` carries.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol, runtime_checkable


class Verdict(str, Enum):
    REPRODUCED = "REPRODUCED"  # every part's interval inside the claim's region, every gate passed
    PARTIAL = "PARTIAL"  # some parts reproduced, the others decided not reproduced
    NOT_REPRODUCED = "NOT_REPRODUCED"  # evidence of absence: the interval excludes the claim's region
    INCONCLUSIVE = "INCONCLUSIVE"  # a valid run too small or too noisy to decide, or a failed gate
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
class Interval:
    """A confidence interval and where it came from: the method and its independent units."""

    low: float
    high: float
    n: int  # independent units the interval is over
    units: str  # what they are: "pairs", "edits", "faults", "rounds", "seeds", "segments", ...
    method: str  # e.g. "BCa bootstrap over pairs", "exact binomial (Clopper-Pearson)", "t over paired rounds"
    level: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def __str__(self) -> str:
        return f"[{self.low:.4g}, {self.high:.4g}]"


@dataclass(frozen=True)
class Estimate:
    """A measured value with its interval."""

    value: float
    interval: Interval

    def __str__(self) -> str:
        return f"{self.value:.4g} {self.interval} ({self.interval.method}, n = {self.interval.n} {self.interval.units})"


@dataclass(frozen=True)
class Region:
    """Where a claim holds, ``low < x < high`` (None: unbounded), fixed before measuring; its finite bounds
    are the smallest effect of interest."""

    low: float | None = None
    high: float | None = None

    def __post_init__(self):
        if self.low is None and self.high is None:
            raise ValueError("A region needs at least one finite bound; an unbounded region decides nothing.")
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"Region ({self.low}, {self.high}) is empty.")

    def contains(self, x: float) -> bool:
        return (self.low is None or x > self.low) and (self.high is None or x < self.high)

    def decide(self, interval: Interval) -> Verdict:
        """REPRODUCED inside, NOT_REPRODUCED entirely outside, INCONCLUSIVE across a boundary (or NaN)."""
        lo, hi = interval.low, interval.high
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            return Verdict.INCONCLUSIVE
        if self.contains(lo) and self.contains(hi):
            return Verdict.REPRODUCED
        below = self.low is not None and hi <= self.low
        above = self.high is not None and lo >= self.high
        return Verdict.NOT_REPRODUCED if below or above else Verdict.INCONCLUSIVE

    def nearest_boundary(self, x: float) -> float:
        bounds = [b for b in (self.low, self.high) if b is not None]
        return min(bounds, key=lambda b: abs(x - b))

    def __str__(self) -> str:
        if self.low is None:
            return f"< {self.high:.4g}"
        if self.high is None:
            return f"> {self.low:.4g}"
        return f"({self.low:.4g}, {self.high:.4g})"


@dataclass(frozen=True)
class Part:
    """One part of a claim decided by its own interval against its own region."""

    name: str
    estimate: Estimate
    region: Region

    @property
    def verdict(self) -> Verdict:
        return self.region.decide(self.estimate.interval)

    def units_to_decide(self) -> int | None:
        """Units whose interval would clear the nearest boundary: the interval's reach from the estimate
        towards that boundary, scaled as 1/sqrt(n) around the same estimate, must end short of it. None when
        the estimate sits on the boundary (no number of units decides)."""
        interval, value = self.estimate.interval, self.estimate.value
        boundary = self.region.nearest_boundary(value)
        reach = value - interval.low if boundary < value else interval.high - value
        distance = abs(value - boundary)
        if not (distance > 0 and math.isfinite(reach)):
            return None
        return max(interval.n + 1, math.ceil(interval.n * (reach / distance) ** 2))


@dataclass(frozen=True)
class Gate:
    """A control that makes a run count; when it fails the verdict is INCONCLUSIVE, naming it."""

    name: str
    passed: bool
    detail: str  # what was measured against what was required


@dataclass(frozen=True)
class Ruling:
    """How a verdict was reached: the parts with their intervals, the gates, and what would decide."""

    verdict: Verdict
    decided_by: str  # "region", or the failed gate(s)
    parts: tuple[Part, ...] = ()
    gates: tuple[Gate, ...] = ()
    to_decide: str = ""  # for INCONCLUSIVE: how many units would decide, and which profile provides them


def combine_parts(verdicts: Sequence[Verdict]) -> Verdict:
    """The default rule for a claim of several parts: all reproduced -> REPRODUCED; all decided not ->
    NOT_REPRODUCED; some of each and none undecided -> PARTIAL; any undecided -> INCONCLUSIVE."""
    if not verdicts or Verdict.INCONCLUSIVE in verdicts:
        return Verdict.INCONCLUSIVE
    if all(v == Verdict.REPRODUCED for v in verdicts):
        return Verdict.REPRODUCED
    if all(v == Verdict.NOT_REPRODUCED for v in verdicts):
        return Verdict.NOT_REPRODUCED
    return Verdict.PARTIAL


def judge(
    parts: Sequence[Part],
    gates: Sequence[Gate] = (),
    *,
    combine: Callable[[dict[str, Verdict]], Verdict] | None = None,
    units_by_profile: dict[str, int] | None = None,
) -> Ruling:
    """The verdict of a claim: a failed gate -> INCONCLUSIVE naming it; else ``combine`` (by part name;
    default ``combine_parts``) of each part's region decision. ``units_by_profile`` (profile -> units it
    runs) lets an INCONCLUSIVE ruling say which profile would provide the units that decide."""
    parts, gates = tuple(parts), tuple(gates)
    failed = [g for g in gates if not g.passed]
    if failed:
        return Ruling(Verdict.INCONCLUSIVE, "gate: " + "; ".join(f"{g.name} ({g.detail})" for g in failed), parts, gates)
    by_name = {p.name: p.verdict for p in parts}
    verdict = combine(by_name) if combine else combine_parts(list(by_name.values()))
    to_decide = ""
    if verdict == Verdict.INCONCLUSIVE:
        to_decide = "; ".join(_to_decide(p, units_by_profile or {}) for p in parts if p.verdict == Verdict.INCONCLUSIVE)
    return Ruling(verdict, "region", parts, gates, to_decide)


def _to_decide(part: Part, units_by_profile: dict[str, int]) -> str:
    interval = part.estimate.interval
    needed = part.units_to_decide()
    if needed is None:
        return f"{part.name}: the estimate sits on the region's boundary; no number of {interval.units} decides it"
    text = (f"{part.name}: ~{needed:,} {interval.units} would decide (now {interval.n}; the interval's "
            f"half-width scaled as 1/sqrt(n))")
    enough = [name for name, units in units_by_profile.items() if units >= needed]
    return text + (f"; the {enough[0]} profile runs {units_by_profile[enough[0]]:,}" if enough else
                   "; no profile runs that many yet")


@dataclass(frozen=True)
class KeyNumber:
    """The one number a reader compares first: ours (with its interval) next to the published one."""

    name: str
    ours: float | None
    published: float | str | None
    unit: str = ""
    interval: Interval | None = None


@dataclass
class Measurement:
    """What an experiment returns for the record: its verdict and the evidence behind it."""

    verdict: Verdict
    key_number: KeyNumber
    criteria: dict = field(default_factory=dict)  # the values the verdict rule looked at (Estimates where judged)
    numbers: dict = field(default_factory=dict)  # everything else worth reporting (scalars or lists of rows)
    published: dict = field(default_factory=dict)  # the source's numbers, for comparison
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why the verdict is what it is; caveats
    ruling: Ruling | None = None  # the parts, intervals and gates the verdict came from

    def __post_init__(self):
        if self.ruling is not None and self.ruling.verdict != self.verdict:
            raise ValueError(f"Measurement verdict {self.verdict.value} differs from its ruling's {self.ruling.verdict.value}.")


# ---- reading the records back (repro.results): the JSON of the dataclasses above ----


def interval_from_dict(d: dict) -> Interval:
    return Interval(**{**d, "low": float(d["low"]), "high": float(d["high"])})  # non-finite bounds are stored as text


def estimate_from_dict(d: dict) -> Estimate:
    return Estimate(d["value"], interval_from_dict(d["interval"]))


def with_estimates(obj):
    """JSON read back with every ``{"value", "interval"}`` dict (an Estimate as written) an Estimate again."""
    if isinstance(obj, dict):
        if obj.keys() == {"value", "interval"}:
            return estimate_from_dict(obj)
        return {k: with_estimates(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [with_estimates(v) for v in obj]
    return obj


def ruling_from_dict(d: dict) -> Ruling:
    parts = tuple(
        Part(p["name"], estimate_from_dict(p["estimate"]), Region(**p["region"])) for p in d.get("parts", ())
    )
    return Ruling(
        verdict=Verdict(d["verdict"]),
        decided_by=d["decided_by"],
        parts=parts,
        gates=tuple(Gate(**g) for g in d.get("gates", ())),
        to_decide=d.get("to_decide", ""),
    )


@runtime_checkable
class ClaimResult(Protocol):
    """What every claim's ``run_<claim>`` returns, and all that ``claims/conftest.py`` relies on.

    ``measurement()`` is the record for the report (verdict, key number, criteria, numbers, figures,
    notes); ``snapshot()`` holds only numbers that are the same on every run, thread count and machine,
    rounded with ``repro.snapshots.rounded`` (never timings).
    """

    def measurement(self) -> Measurement: ...

    def snapshot(self) -> dict: ...

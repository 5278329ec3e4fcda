"""Placements: which site (local workstation or remote machine) runs each module of the IOI pipeline.

The seed's ``configs/hybrid.json`` maps each module to a site; a placement file here is the same idea, a
JSON object ``{"filter": "local", "collect": "remote", "patch": "remote", "plot": "local"}`` naming all
four modules. The three named modes are the seed's: Local (everything on the workstation), Remote
(everything on the remote machine) and Hybrid (the compute-heavy modules, Collect and Patch, remote; the
rest local). With two sites and four modules there are 2**4 = 16 placements in all.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from repro.readers import InputError, check_type, read_json

STAGES = ("filter", "collect", "patch", "plot")  # the pipeline, in order
LOCAL, REMOTE = "local", "remote"
SITES = (LOCAL, REMOTE)


class PlacementError(InputError):
    """A placement file or name is unusable; the message names the input, what is wrong and the fix."""


@dataclass(frozen=True)
class Placement:
    """One site per stage, in ``STAGES`` order."""

    sites: tuple[str, ...]

    def __post_init__(self):
        if len(self.sites) != len(STAGES) or any(s not in SITES for s in self.sites):
            raise PlacementError(f"A placement needs one of {SITES} for each of {STAGES}; got {self.sites}.")

    def site(self, stage: str) -> str:
        return self.sites[STAGES.index(stage)]

    def as_dict(self) -> dict[str, str]:
        return dict(zip(STAGES, self.sites))

    @property
    def label(self) -> str:
        """Short and unique: one letter per stage, e.g. ``LRRL`` for the seed's hybrid."""
        return "".join(s[0].upper() for s in self.sites)

    @property
    def name(self) -> str:
        """The named mode this placement is, else its label."""
        return next((n for n, p in MODES.items() if p == self), self.label)


def placement(**sites: str) -> Placement:
    return Placement(tuple(sites[s] for s in STAGES))


MODES = {  # the seed's three modes
    "local": Placement((LOCAL,) * 4),
    "remote": Placement((REMOTE,) * 4),
    "hybrid": placement(filter=LOCAL, collect=REMOTE, patch=REMOTE, plot=LOCAL),
}


def all_placements() -> list[Placement]:
    """All 16, in a fixed order (local-first lexicographic)."""
    return [Placement(p) for p in itertools.product(SITES, repeat=len(STAGES))]


def parse_placement(data, where: str = "placement") -> Placement:
    """A placement from a parsed JSON object: every module named once, each to a known site."""
    if not isinstance(data, dict):
        raise PlacementError(
            f"{where}: expected a JSON object mapping each module {STAGES} to {' or '.join(SITES)}, "
            f"got {type(data).__name__}."
        )
    unknown = [k for k in data if k not in STAGES]
    if unknown:
        raise PlacementError(f"{where}: unknown module(s) {unknown}; the modules are {', '.join(STAGES)}.")
    missing = [s for s in STAGES if s not in data]
    if missing:
        raise PlacementError(f"{where}: no site for module(s) {missing}; name a site for each of {', '.join(STAGES)}.")
    for stage in STAGES:
        check_type(data[stage], str, f"{where}: module {stage!r}")
    bad = {k: v for k, v in data.items() if v not in SITES}
    if bad:
        raise PlacementError(f"{where}: unknown site(s) {bad}; the sites are {', '.join(SITES)}.")
    return Placement(tuple(data[s] for s in STAGES))


def load_placement(path: str | Path) -> Placement:
    """Read a placement file (see the module docstring for the format) through the suite's checked reader:
    a missing, non-UTF-8 or malformed file is one ``InputError`` line naming it."""
    return parse_placement(read_json(path, what="placement file"), where=str(path))


def resolve_placement(spec: str) -> Placement:
    """A named mode (``local``, ``remote``, ``hybrid``), a label such as ``LRRL``, or a placement file."""
    if spec in MODES:
        return MODES[spec]
    if len(spec) == len(STAGES) and set(spec) <= {"L", "R"}:
        return Placement(tuple(LOCAL if c == "L" else REMOTE for c in spec))
    if not Path(spec).exists():
        raise PlacementError(
            f"Placement {spec!r} is not a mode ({', '.join(MODES)}), not a label of {len(STAGES)} letters L/R "
            f"(one per module {', '.join(STAGES)}, e.g. LRRL), and not an existing file."
        )
    return load_placement(spec)

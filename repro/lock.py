"""The committed lock: every package the nox sessions install, direct and transitive, at an exact version.

``nox -s lock`` writes ``locks/suite.txt`` (and ``locks/crosscheck.txt``) with ``uv pip compile`` for
Python 3.11 on linux x86_64; under each pin, ``# via`` names the packages that need it. The sessions
install with the lock as a pip constraints file, so a fresh machine next year gets the same packages and
the snapshots compare like with like. Two readers, both here so the format is parsed once:

- ``noxfile.py`` builds a session's constraints (``constraints``). torch is the exception: the sessions
  install ``$REPRO_TORCH_SPEC`` (a CUDA build on a GPU machine), so when that differs from the lock's
  torch, the lock's torch and the packages only torch needs (CUDA libraries, sympy, ...) yield to it.
- ``repro.results.provenance`` records the lock's sha256 and every installed package whose version
  differs from it (``drift``), so a result says whether it came from the locked environment.

Standard library only: nox imports this before any virtual environment exists.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "locks"
SUITE_LOCK = LOCKS / "suite.txt"  # the main suite's sessions (tests, cpu, gpu, report, bench, lint)
CROSSCHECK_LOCK = LOCKS / "crosscheck.txt"  # nox -s crosscheck (TransformerLens and what it pulls)

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)")


@dataclass(frozen=True)
class Pin:
    name: str  # canonical: lower case, runs of -_. as one "-"
    version: str
    needed_by: frozenset[str]  # what needs it ("# via"): canonical names, or "-r <input file>"


def canonical(name: str) -> str:
    """A package name as PyPI compares them (PEP 503): ``Typing_Extensions`` -> ``typing-extensions``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str | Path = SUITE_LOCK) -> dict[str, Pin]:
    """The pins of a ``uv pip compile`` / ``pip-compile`` output file, by canonical name."""
    pins: dict[str, Pin] = {}
    current, via = None, []

    def close():
        if current:
            pins[current[0]] = Pin(current[0], current[1], frozenset(via))

    for line in Path(path).read_text("utf-8").splitlines():
        match = _PIN.match(line)
        if match:
            close()
            current, via = (canonical(match[1]), match[2]), []
            continue
        comment = line.strip().removeprefix("#").strip()
        if current and line.startswith((" ", "\t")) and comment:
            needer = comment.removeprefix("via").strip()  # "# via torch" or, one a line, "#   torch"
            if needer.startswith("-r "):  # asked for by an input file
                via.append(needer)
            elif needer and not needer.startswith("-c "):  # a constraint pins, it does not need
                via.append(canonical(needer.split()[0]))
    close()
    return pins


def without(pins: dict[str, Pin], package: str) -> dict[str, Pin]:
    """The pins less ``package`` and every pin that only it (directly or through others dropped) needs."""
    dropped = {canonical(package)}
    while True:
        more = {
            name for name, pin in pins.items()
            if name not in dropped and pin.needed_by and pin.needed_by <= dropped
        }
        if not more:
            return {name: pin for name, pin in pins.items() if name not in dropped}
        dropped |= more


def constraints(pins: dict[str, Pin], torch_spec: str) -> str:
    """A pip constraints file: the lock's pins, with torch as ``torch_spec`` asks. A spec equal to the
    lock's torch keeps everything; any other (a CUDA build, another version) drops the lock's torch and
    what only torch needs, so pip resolves those for the torch asked for."""
    locked = pins.get("torch")
    if locked is None or torch_spec.replace(" ", "") != f"torch=={locked.version}":
        pins = without(pins, "torch")
    lines = [f"{pin.name}=={pin.version}" for pin in pins.values()]
    if "torch" not in pins:
        lines.append(torch_spec)
    return "\n".join(lines) + "\n"


def sha256(path: str | Path = SUITE_LOCK) -> str | None:
    """The lock file's sha256, or None when it is not there (e.g. an installed, not checked-out, copy)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _public(version: str) -> str:
    return version.split("+", 1)[0]  # torch 2.13.0+cpu is the lock's torch 2.13.0


def drift(pins: dict[str, Pin], installed: dict[str, str]) -> list[str]:
    """Installed packages (canonical name -> version) whose version differs from the lock, as
    ``"numpy 2.5.0 (locked 2.4.6)"``; locked packages that are not installed (CUDA libraries on a CPU
    machine, tools of other sessions) are not drift."""
    return [
        f"{name} {installed[name]} (locked {pin.version})"
        for name, pin in sorted(pins.items())
        if name in installed and _public(installed[name]) != _public(pin.version)
    ]

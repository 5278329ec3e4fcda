"""The ``--out`` rule: a command replaces an output folder only when nothing of the user's can be lost.

Every folder a command writes (``repro.files.staged_dir``) carries a marker, ``.repro-out.json``, naming
the command and every file and folder it wrote. A later run may replace ``--out`` whole when it does not
exist, is empty, or holds exactly an earlier run of the *same* command (files deleted since are fine, files
added are not). Anything else is refused with one line saying what is there and what to do; ``--force``
replaces a folder regardless. A file, a link or a folder holding the working directory is never replaced.

``repro.cli.guarded`` opens a scope for its command (``running``); ``repro.cli.prepare`` checks ``--out``
before any model loads and records the user's ``--force`` (``claim``); ``staged_dir`` applies the same
rule again when it starts and when it swaps the new folder in, so a command that skipped the early check
still cannot delete what it did not write.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

MARKER = ".repro-out.json"
SUITE = "repro"


class OutFolderError(ValueError):
    """``--out`` holds something a run must not replace; the message says what and how to proceed."""


@dataclass(frozen=True)
class OutClaim:
    """How one run may write one output folder: the command named in its marker, and the user's --force."""

    command: str
    force: bool = False
    flag: str = "--out"


_COMMAND: ContextVar[str | None] = ContextVar("repro_command", default=None)
_CLAIMS: ContextVar[dict[Path, OutClaim] | None] = ContextVar("repro_out_claims", default=None)


@contextmanager
def running(command: str) -> Iterator[None]:
    """The scope of one command's run: ``staged_dir`` marks what it writes with ``command``."""
    tokens = _COMMAND.set(command), _CLAIMS.set({})
    try:
        yield
    finally:
        _COMMAND.reset(tokens[0])
        _CLAIMS.reset(tokens[1])


def _key(out: str | Path) -> Path:
    return Path(os.path.abspath(Path(out).expanduser()))


def claim(out: str | Path, *, force: bool = False, command: str | None = None, flag: str = "--out") -> OutClaim:
    """Check ``out`` for this run (``OutFolderError`` when it may not be replaced) and remember the answer
    for ``staged_dir``."""
    command = command or _COMMAND.get()
    if command is None:
        raise RuntimeError("repro.outdir.claim needs a command: call it inside repro.cli.guarded or pass command=")
    granted = OutClaim(command, force, flag)
    check(out, granted)
    claims = _CLAIMS.get()
    if claims is not None:
        claims[_key(out)] = granted
    return granted


def claim_for(out: str | Path, command: str | None = None, force: bool | None = None) -> OutClaim:
    """What ``staged_dir`` may do with ``out``: the explicit arguments, else what this run claimed for it,
    else the running command without --force."""
    claimed = (_CLAIMS.get() or {}).get(_key(out))
    command = command or (claimed.command if claimed else _COMMAND.get())
    if command is None:
        raise RuntimeError("staged_dir needs the command that writes the folder: pass command= or run it "
                           "inside repro.cli.guarded")
    force = force if force is not None else bool(claimed and claimed.force)
    return OutClaim(command, force, claimed.flag if claimed else "--out")


def _listing(folder: Path) -> set[str]:
    """Every file, link and folder under ``folder``, as paths relative to it (links are not followed)."""
    found = set()
    for root, dirs, files in os.walk(folder, followlinks=False):
        rel = Path(root).relative_to(folder)
        found.update((rel / name).as_posix() for name in (*dirs, *files))
    return found


def _some(names, limit: int = 3) -> str:
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def read_marker(folder: Path) -> dict | None:
    """The folder's marker, or None when it has none or one this suite did not write."""
    try:
        marker = json.loads((folder / MARKER).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    ok = (isinstance(marker, dict) and marker.get("suite") == SUITE and isinstance(marker.get("command"), str)
          and isinstance(marker.get("written"), list))
    return marker if ok else None


def write_marker(folder: Path, command: str) -> None:
    """Mark ``folder`` as written whole by ``command``, listing what it holds now."""
    written = sorted(_listing(folder) - {MARKER})
    marker = {"suite": SUITE, "command": command, "written": written,
              "note": f"written by `python -m repro {command}`; a rerun of that command replaces this folder "
                      "whole, any other command refuses it (unless --force)"}
    (folder / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")


def _holds_cwd(out: Path) -> bool:
    try:
        target = out.resolve()
        precious = (Path.cwd().resolve(), Path.home().resolve())
    except (OSError, RuntimeError):
        return False
    return any(target == p or target in p.parents for p in precious)


def check(out: str | Path, granted: OutClaim) -> None:
    """Refuse (``OutFolderError``) an ``out`` that a run of ``granted.command`` may not replace."""
    out = Path(out).expanduser()
    flag, command = granted.flag, granted.command
    again = f"choose another {flag}, or add --force to replace it (everything in it is deleted)"
    if out.is_symlink():
        raise OutFolderError(f"{flag} {out} is a symbolic link; give the folder itself, or another {flag}.")
    if not out.exists():
        return
    if not out.is_dir():
        raise OutFolderError(f"{flag} {out} is a file, not a folder; a run never replaces a file: move it away "
                             f"or choose another {flag}.")
    if _holds_cwd(out):
        raise OutFolderError(f"{flag} {out} holds the current folder or your home folder; a run replaces "
                             f"{flag} whole, so give it a folder of its own.")
    if granted.force:
        return
    try:
        present = _listing(out)
    except OSError as err:
        raise OutFolderError(f"{flag} {out} cannot be listed ({err.strerror or err}); choose another {flag}.") from None
    if not present:
        return
    marker = read_marker(out)
    if marker is None:
        raise OutFolderError(f"{flag} {out} is a folder this suite did not write (it holds {_some(present)}); {again}.")
    if marker["command"] != command:
        raise OutFolderError(f"{flag} {out} holds the output of `python -m repro {marker['command']}`, not of "
                             f"`{command}`; {again}.")
    extra = present - set(marker["written"]) - {MARKER}
    if extra:
        raise OutFolderError(f"{flag} {out} holds files the earlier `{command}` run did not write "
                             f"({_some(extra)}); move them out, {again}.")

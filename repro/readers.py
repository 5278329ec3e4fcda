"""One checked reader for every file a user hands the suite (pairs, placements, sweeps, corpora, configs).

A bad file is one ``InputError`` line naming the file, the record and the field, and what was expected:
never a ``UnicodeDecodeError`` or ``KeyError`` traceback. ``repro.cli.guarded`` turns it into exit status 2.

    data = read_json(path, what="IOI pairs file")
    for where, entry in records(data, path, what="pair objects"):
        io = field(entry, "io", str, where)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_MISSING = object()


class InputError(ValueError):
    """A file or value from the user is unreadable or malformed; the message says where and what to do."""


def read_text(path: str | Path, *, what: str) -> str:
    """The file's text, decoded as UTF-8; one line naming the file when it is missing, a folder,
    unreadable or not UTF-8."""
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist.") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path} is a folder, not a file.") from None
    except OSError as err:
        raise InputError(f"Cannot read {what} {path} ({err.strerror or err}).") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(
            f"{what} {path} is not UTF-8 text (byte 0x{data[err.start]:02x} on line {line}); save it as UTF-8."
        ) from None


def read_json(path: str | Path, *, what: str) -> Any:
    """The file's JSON value; one line naming the file and the position of a syntax error."""
    text = read_text(path, what=what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(
            f"{what} {Path(path)} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})."
        ) from None


def _kind(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
             dict: "an object", type(None): "null"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _type_name(value) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def check_type(value, kind, where: str):
    """``value`` if it is of ``kind`` (a type or tuple of types; bool is never an int here), else InputError."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise InputError(f"{where} must be {_kind(kind)}, got {_type_name(value)} {json.dumps(value, default=str)[:60]}.")
    return value


def records(data, path: str | Path, *, what: str, allow_empty: bool = False) -> Iterator[tuple[str, dict]]:
    """``(where, record)`` for each object of a JSON list, ``where`` naming the file and the entry."""
    if not isinstance(data, list) or (not data and not allow_empty):
        raise InputError(f"{path}: expected a {'' if allow_empty else 'non-empty '}JSON list of {what}, "
                         f"got {_type_name(data)}.")
    for i, entry in enumerate(data):
        where = f"{path} entry {i}"
        check_type(entry, dict, where)
        yield where, entry


def field(record: dict, key: str, kind, where: str, default=_MISSING):
    """``record[key]`` checked against ``kind``; a missing key is an error unless a default is given."""
    if key not in record:
        if default is _MISSING:
            raise InputError(f"{where}: missing field {key!r}.")
        return default
    return check_type(record[key], kind, f"{where}: field {key!r}")

"""Regression snapshots that compare numbers by tolerance, not by text.

syrupy compares serialised text, so a float that moves in its 7th digit between runs or thread counts
fails the snapshot. Here floats are stored rounded and compared with ``math.isclose``; everything else
(ints, strings, verdicts, structure) must match exactly. Timings never belong in a snapshot.
"""

from __future__ import annotations

import json
import math

STORED_DIGITS = 6  # significant digits written to the snapshot file
DECIMALS = 3  # default decimals for ``rounded``: far above float noise (1e-6) between runs and thread counts


def rounded(value, digits: int = DECIMALS):
    """A number (or nested lists/dicts/arrays of them) rounded for a snapshot: None stays None, no "-0.0",
    non-finite floats as text. Claims call this on every float they put in ``snapshot()``."""
    if value is None or isinstance(value, (bool, str, int)) and not hasattr(value, "dtype"):
        return value
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return rounded(value.tolist(), digits)
    if isinstance(value, dict):
        return {str(k): rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    value = float(value)
    return round(value, digits) + 0.0 if math.isfinite(value) else str(value)  # + 0.0: -0.0 -> 0.0


def _round(value):
    if isinstance(value, float):
        return float(f"{value:.{STORED_DIGITS}g}") if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _round(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v) for v in value]
    return value


def mismatches(actual, expected, *, rel: float, abs: float, path: str = "$") -> list[str]:
    """Every place where ``actual`` differs from ``expected`` beyond tolerance (empty list: they match)."""
    number = (int, float)
    if isinstance(actual, bool) or isinstance(expected, bool):
        same = type(actual) is type(expected) and actual == expected  # True must not match 1
        return [] if same else [f"{path}: {actual!r} != {expected!r}"]
    if isinstance(actual, number) and isinstance(expected, number) and float in (type(actual), type(expected)):
        ok = math.isclose(actual, expected, rel_tol=rel, abs_tol=abs)
        return [] if ok else [f"{path}: {actual!r} != {expected!r} (rel {rel}, abs {abs})"]
    if isinstance(actual, dict) and isinstance(expected, dict):
        out = [f"{path}.{k}: missing in snapshot" for k in actual.keys() - expected.keys()]
        out += [f"{path}.{k}: missing in result" for k in expected.keys() - actual.keys()]
        for k in sorted(actual.keys() & expected.keys()):
            out += mismatches(actual[k], expected[k], rel=rel, abs=abs, path=f"{path}.{k}")
        return out
    if isinstance(actual, list) and isinstance(expected, list):
        if len(actual) != len(expected):
            return [f"{path}: length {len(actual)} != {len(expected)}"]
        return [m for i, (a, e) in enumerate(zip(actual, expected)) for m in mismatches(a, e, rel=rel, abs=abs, path=f"{path}[{i}]")]
    return [] if actual == expected else [f"{path}: {actual!r} != {expected!r}"]


def tolerant_json_extension(rel: float = 1e-3, abs: float = 1e-6):
    """A syrupy extension class storing JSON and matching floats within (rel, abs)."""
    from syrupy.extensions.json import JSONSnapshotExtension

    class TolerantJSONExtension(JSONSnapshotExtension):
        def serialize(self, data, **kwargs):
            return super().serialize(_round(data), **kwargs)

        def matches(self, *, serialized_data, snapshot_data) -> bool:
            return not mismatches(json.loads(serialized_data), json.loads(snapshot_data), rel=rel, abs=abs)

    TolerantJSONExtension.tolerance = (rel, abs)
    return TolerantJSONExtension

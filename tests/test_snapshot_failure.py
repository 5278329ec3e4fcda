"""A snapshot mismatch in a claim (claims/conftest.py check_snapshot) lists every number that moved: its
path, the new and the recorded value, and the tolerance."""

import importlib.util
import sys
from pathlib import Path

from repro.snapshots import mismatches

CLAIMS_CONFTEST = Path(__file__).parents[1] / "claims" / "conftest.py"


def _claims_conftest(monkeypatch):
    spec = importlib.util.spec_from_file_location("claims_conftest", CLAIMS_CONFTEST)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_a_mismatch_lists_each_moved_number_with_new_and_recorded_value_and_tolerance(monkeypatch):
    recorded = {"n": 7, "shares": [0.5, 0.25], "top": 3.0}
    new = {"n": 7, "shares": [0.5, 0.2502], "top": 3.1}  # 0.2502 is within rel 1e-3
    moved = mismatches(new, recorded, rel=1e-3, abs=1e-6)
    text = _claims_conftest(monkeypatch).moved_numbers("demo at profile cpu", Path("snap.json"), moved, 1e-3, 1e-6)
    assert text.splitlines()[:2] == [
        "demo at profile cpu: 1 number(s) moved beyond the tolerance (rel 0.001, abs 1e-06) from snap.json; "
        "each line is `path: new != snapshot`:",
        "  $.top: 3.1 != 3.0 (rel 0.001, abs 1e-06)",
    ]
    assert "shares" not in text

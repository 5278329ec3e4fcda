import pytest

from repro.snapshots import _round, mismatches


def test_equal_structures_match():
    data = {"verdict": "REPRODUCED", "counts": [1, 2, 3], "share": 0.5123}
    assert mismatches(data, dict(data), rel=1e-3, abs=1e-6) == []


def test_float_inside_tolerance_matches_and_outside_does_not():
    assert mismatches({"x": 1.0004}, {"x": 1.0}, rel=1e-3, abs=0) == []
    assert mismatches({"x": 1.002}, {"x": 1.0}, rel=1e-3, abs=0) == ["$.x: 1.002 != 1.0 (rel 0.001, abs 0)"]


def test_ints_strings_and_structure_must_match_exactly():
    assert mismatches({"n": 3}, {"n": 4}, rel=0.5, abs=1) == ["$.n: 3 != 4"]
    assert mismatches({"v": "PARTIAL"}, {"v": "REPRODUCED"}, rel=1, abs=1)
    assert mismatches([1, 2], [1, 2, 3], rel=1, abs=1) == ["$: length 2 != 3"]
    assert mismatches({"a": 1}, {"b": 1}, rel=1, abs=1) == ["$.a: missing in snapshot", "$.b: missing in result"]
    assert mismatches({"flag": True}, {"flag": 1}, rel=1, abs=1)


def test_stored_floats_are_rounded():
    assert _round({"x": [0.123456789, 2]}) == {"x": [0.123457, 2]}


SNAPSHOT_TEST = """
from repro.snapshots import tolerant_json_extension

def test_numbers(snapshot):
    assert {{"value": {value}, "n": 7}} == snapshot.use_extension(tolerant_json_extension(rel=1e-3, abs=1e-9))
"""


@pytest.mark.parametrize("new_value, passes", [(1.0005, True), (1.01, False)])
def test_syrupy_snapshot_compares_with_tolerance(pytester, new_value, passes):
    pytester.makepyfile(test_snap=SNAPSHOT_TEST.format(value=1.0))
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    snapshot_file = next(pytester.path.glob("__snapshots__/test_snap/*.json"))
    recorded = snapshot_file.read_text()
    pytester.makepyfile(test_snap=SNAPSHOT_TEST.format(value=new_value))
    result = pytester.runpytest()
    result.assert_outcomes(passed=int(passes), failed=int(not passes))
    assert snapshot_file.read_text() == recorded  # comparing never rewrites the file

"""bench.md is built from sections: re-measuring one benchmark keeps the others; bad input fails in one line."""

import json

import pytest

from repro import bench
from repro.readers import InputError


@pytest.fixture
def fake_benchmarks(monkeypatch, tmp_path):
    monkeypatch.setenv("REPRO_REPORTS_DIR", str(tmp_path))
    calls = []

    def fake(name):
        def run(profile):
            calls.append(name)
            return [{"benchmark": name, "median_ms": 1.5 * len(calls)}]
        return run

    monkeypatch.setattr(bench, "BENCHMARKS", {"alpha": "alpha:run", "beta": "beta:run"})
    monkeypatch.setattr(bench.importlib, "import_module", lambda module: type("M", (), {"run": fake(module)}))
    return tmp_path, calls


def test_selected_benchmark_replaces_its_section_and_keeps_the_others(fake_benchmarks):
    root, calls = fake_benchmarks
    bench.write_benchmarks("cpu")
    first = json.loads((root / "cpu" / "bench.json").read_text())
    bench.write_benchmarks("cpu", "beta")
    assert calls == ["alpha", "beta", "beta"]
    sections = json.loads((root / "cpu" / "bench.json").read_text())
    assert sections["alpha"] == first["alpha"]
    assert sections["beta"]["rows"] == [{"benchmark": "beta", "median_ms": 4.5}]
    text = (root / "cpu" / "bench.md").read_text()
    assert text.index("## alpha") < text.index("## beta") and "| beta | 4.5 |" in text
    assert text.count("| git_commit |") == 2  # each section says what it was measured on


def test_unknown_selection_lists_the_benchmarks(fake_benchmarks):
    with pytest.raises(InputError, match="No benchmark matches -k 'gamma'; the benchmarks are: alpha, beta"):
        bench.write_benchmarks("cpu", "gamma")
    assert fake_benchmarks[1] == []


def test_malformed_bench_data_fails_before_measuring(fake_benchmarks):
    root, calls = fake_benchmarks
    (root / "cpu").mkdir()
    (root / "cpu" / "bench.json").write_text(json.dumps({"alpha": {"machine": {}, "rows": "oops"}}))
    with pytest.raises(InputError, match=r"alpha\.rows must be a list"):
        bench.write_benchmarks("cpu", "beta")
    assert calls == []

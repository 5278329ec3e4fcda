import json

import pytest

from repro import files, results
from repro.report import build_report, write_report
from repro.results import ClaimRecord, load_records, not_run, write_json_atomic, write_record
from repro.verdicts import Claim, KeyNumber, Measurement, Verdict

CLAIM = Claim("demo", 9, "Demo claim", "Original words.", "English words.", "Seed 009", "A method.", "A rule.")


def _record(model="gpt2-random", verdict=Verdict.REPRODUCED, expected=Verdict.REPRODUCED):
    m = Measurement(
        verdict,
        KeyNumber("speed-up", 3.4, 3.14, "×"),
        criteria={"ratio ≥ 2": True},
        numbers={"median_ms": 1.25, "sweep": [{"seq_len": 1, "ratio": 3.0}, {"seq_len": 512, "ratio": 1.2}]},
        published={"ratio": 3.14},
        figures=[results.Path("figures/demo__gpt2-random__bars.png")],
        notes=["Random weights are faithful for timings."],
    )
    return ClaimRecord(CLAIM, model, "cpu", expected, m, provenance=results.provenance(model_source="random", model_sha256=None))


def test_record_round_trips_through_json(tmp_path):
    record = _record()
    write_record(record, tmp_path)
    (loaded,) = load_records("cpu", tmp_path)
    assert loaded == record


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = write_json_atomic(tmp_path / "r.json", {"v": 1})

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind


def test_atomic_write_keeps_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        mode = files.write_atomic(tmp_path / "r.txt", "x").stat().st_mode & 0o777
    finally:
        os.umask(old)
    assert mode == 0o644  # mkstemp alone would leave 0600


def test_provenance_names_code_packages_machine_and_time():
    prov = results.provenance(model_sha256="abc")
    assert {"git_commit", "packages", "cpu", "torch_threads", "date"} <= prov.keys()
    assert prov["packages"]["torch"] != "not installed" and prov["model_sha256"] == "abc"


def test_report_is_built_from_saved_records(tmp_path):
    write_record(_record(), tmp_path)
    write_record(not_run(CLAIM, "gpt2", "cpu", Verdict.REPRODUCED, "GPT-2 weights not available offline"), tmp_path)
    write_record(_record("smollm2-135m", Verdict.PARTIAL, Verdict.REPRODUCED), tmp_path)
    path = write_report("cpu", tmp_path)
    text = path.read_text()
    assert path == tmp_path / "cpu" / "report.md"
    assert "| 9 | Demo claim | `gpt2-random` | ✅ REPRODUCED | speed-up | 3.4× | 3.14× |" in text
    assert "⏸ NOT_RUN (declared REPRODUCED)" in text and "GPT-2 weights not available offline" in text
    assert "🟡 PARTIAL (declared REPRODUCED)" in text
    assert "> Original words." in text and "| 512 | 1.2 |" in text
    assert "![gpt2-random: demo__gpt2-random__bars](figures/demo__gpt2-random__bars.png)" in text
    assert "## Provenance" in text and build_report("cpu", tmp_path) == text


def test_report_embeds_the_latest_benchmark_table(tmp_path):
    write_record(_record(), tmp_path)
    assert "None yet: run `nox -s bench`" in build_report("cpu", tmp_path)
    table = "| benchmark | median_ms |\n|---|---|\n| split top | 41.6 |"
    (tmp_path / "cpu" / "bench.md").write_text(f"# Benchmarks — profile `cpu`\n\n## split\n\n{table}\n")
    text = build_report("cpu", tmp_path)
    assert f"## Benchmarks\n\nFrom [`bench.md`](bench.md).\n\n### split\n\n{table}" in text
    assert text.index("## Benchmarks") < text.index("## Provenance")


def test_report_without_results_says_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run `nox -s gpu` first"):
        build_report("gpu", tmp_path)


def test_corrupt_record_is_named(tmp_path):
    folder = results.results_dir("cpu", tmp_path)
    folder.mkdir(parents=True)
    (folder / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json is not a valid result record"):
        load_records("cpu", tmp_path)

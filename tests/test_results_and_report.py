import json

import pytest

from repro import files, results
from repro.report import build_report, write_report
from repro.results import ClaimRecord, load_records, not_run, write_json_atomic, write_record
from repro.verdicts import (
    Claim,
    Estimate,
    Gate,
    Interval,
    KeyNumber,
    Measurement,
    Part,
    Region,
    Verdict,
    judge,
)

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


def _ruled_record(gate_passed=True):
    """A record decided by intervals: one part inside its region, one straddling it."""
    speed = Estimate(3.4, Interval(3.1, 3.8, 41, "pairs", "BCa bootstrap over pairs"))
    share = Estimate(0.55, Interval(0.45, 0.62, 41, "pairs", "BCa bootstrap over pairs"))
    ruling = judge(
        [Part("ratio", speed, Region(low=2.0)), Part("LM head share", share, Region(low=0.5))],
        [Gate("timing pairs", gate_passed, "41 >= 20")],
        units_by_profile={"cpu": 41, "gpu": 400},
    )
    m = Measurement(ruling.verdict, KeyNumber("speed-up", 3.4, 3.14, "×", speed.interval),
                    criteria={"ratio": speed}, ruling=ruling)
    return ClaimRecord(CLAIM, "gpt2-random", "cpu", Verdict.INCONCLUSIVE, m, provenance=results.provenance())


def test_a_ruled_record_round_trips_and_the_report_shows_intervals_n_and_gates(tmp_path):
    record = _ruled_record()
    write_record(record, tmp_path)
    (loaded,) = load_records("cpu", tmp_path)
    assert loaded == record and loaded.measurement.ruling.parts[1].verdict == Verdict.INCONCLUSIVE
    text = build_report("cpu", tmp_path)
    assert "| 95% interval | n | published | decided by |" in text
    assert "| ❔ INCONCLUSIVE | speed-up | 3.4× | [3.1, 3.8] | 41 pairs | 3.14× | region |" in text
    assert "| LM head share | 0.55 | [0.45, 0.62] | 41 pairs | BCa bootstrap over pairs | > 0.5 | ❔ INCONCLUSIVE |" in text
    assert "| timing pairs | ✅ yes | 41 >= 20 |" in text
    assert "What would decide: LM head share: ~119 pairs would decide" in text and "the gpu profile runs 400" in text
    assert "| ratio | 3.4 [3.1, 3.8] (n = 41 pairs) |" in text


def test_a_failed_gate_makes_the_verdict_inconclusive_naming_it():
    ruling = _ruled_record(gate_passed=False).measurement.ruling
    assert ruling.verdict == Verdict.INCONCLUSIVE and ruling.decided_by == "gate: timing pairs (41 >= 20)"


def test_report_is_built_from_saved_records(tmp_path):
    write_record(_record(), tmp_path)
    write_record(not_run(CLAIM, "gpt2", "cpu", Verdict.REPRODUCED, "GPT-2 weights not available offline"), tmp_path)
    write_record(_record("smollm2-135m", Verdict.PARTIAL, Verdict.REPRODUCED), tmp_path)
    path = write_report("cpu", tmp_path)
    text = path.read_text()
    assert path == tmp_path / "cpu" / "report.md"
    assert "| 9 | Demo claim | `gpt2-random` | ✅ REPRODUCED | speed-up | 3.4× | — | — | 3.14× | — |" in text
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
    (folder / "demo__gpt2.json").write_text("{}")
    with pytest.raises(ValueError, match="demo__gpt2.json is not a valid result record"):
        load_records("cpu", tmp_path)


# ---- the report reads only what the suite wrote: bad input -> one line naming the file and the fix ----


def _break_stray(folder):
    (folder / "notes.json").write_text('{"a": 1}')


def _break_text(folder):
    (folder / "README.txt").write_text("my notes")


def _break_folder(folder):
    (folder / "old").mkdir()


def _break_renamed_copy(folder):
    (folder / "demo__gpt2.json").write_text((folder / "demo__gpt2-random.json").read_text())


def _break_other_profile(folder):
    path = folder / "demo__gpt2-random.json"
    path.write_text(path.read_text().replace('"profile": "cpu"', '"profile": "gpu"'))


@pytest.mark.parametrize(
    "damage, message",
    [
        (_break_stray, r"notes.json is not a result record \(only <claim>__<model>.json files belong in .*results\)"),
        (_break_text, r"README.txt is not a result record"),
        (_break_folder, r"old is not a result record"),
        (_break_renamed_copy, r"demo__gpt2.json holds claim 'demo' on model 'gpt2-random', not what its name says; "
                              r"delete it \(or rename it to demo__gpt2-random.json\)"),
        (_break_other_profile, r"demo__gpt2-random.json is a record of profile 'gpu', not 'cpu'"),
    ],
)
def test_anything_but_a_matching_record_in_results_is_an_error(tmp_path, damage, message):
    """Before: a stray README.txt was skipped silently, a renamed copy became a second report row and a gpu
    record was reported as cpu."""
    write_record(_record(), tmp_path)
    damage(results.results_dir("cpu", tmp_path))
    with pytest.raises(ValueError, match=message):
        load_records("cpu", tmp_path)


def test_a_write_in_progress_is_not_an_error(tmp_path):
    path = write_record(_record(), tmp_path)
    (path.parent / f".{path.name}.abc123.tmp").write_text("{")  # repro.files.write_atomic's temporary name
    assert [r.model for r in load_records("cpu", tmp_path)] == ["gpt2-random"]


def test_report_command_honours_repro_profile(tmp_path, monkeypatch, capsys):
    from repro.__main__ import main

    record = _record()
    record.profile = "gpu"
    write_record(record, tmp_path)
    monkeypatch.setenv(results.REPORTS_ENV, str(tmp_path))
    monkeypatch.setenv("REPRO_PROFILE", "gpu")
    assert main(["report"]) == 0
    assert "profile `gpu`" in (tmp_path / "gpu" / "report.md").read_text()
    assert not (tmp_path / "cpu").exists()


@pytest.mark.parametrize("argv, env", [(["report", "laptop"], None), (["report"], "laptop")])
def test_report_command_refuses_an_unknown_profile_listing_the_valid_ones(tmp_path, monkeypatch, capsys, argv, env):
    from repro.__main__ import main

    monkeypatch.setenv(results.REPORTS_ENV, str(tmp_path))
    if env:
        monkeypatch.setenv("REPRO_PROFILE", env)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == "python -m repro report: error: Unknown profile 'laptop'; valid profiles: cpu, gpu.\n"


def test_report_command_turns_a_stray_file_into_one_line(tmp_path, monkeypatch, capsys):
    from repro.__main__ import main

    write_record(_record(), tmp_path)
    (results.results_dir("cpu", tmp_path) / "notes.txt").write_text("")
    monkeypatch.setenv(results.REPORTS_ENV, str(tmp_path))
    assert main(["report", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "notes.txt is not a result record" in err

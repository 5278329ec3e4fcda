"""The new user's battery (issue 19): every bad input is exit status 2, one line on stderr, no traceback, and
nothing on disk changed, found before any model loads.

Each row of ``TRIES`` is one try, run in-process through ``python -m repro``'s entry point
(``repro.__main__.main``). ``--out`` (``{out}`` in the arguments) is set up as the row says, the whole
temporary folder is fingerprinted before and after, and every model loader is replaced by one that fails
the test, so a row that reached a model would show. To add a try: one ``Try`` row (``files`` are written
under ``{tmp}`` first; ``env`` is set for the call).

| --out holds (``out=``) | what it is                                                                       |
|------------------------|----------------------------------------------------------------------------------|
| ``"earlier"``          | an earlier run of the same command (marked): allowed, so the row tests its input |
| ``"none"``             | nothing: it must still not exist afterwards                                      |
| ``"user"``             | the user's ``notes.txt`` and ``thesis.tex``: both must be there afterwards       |
| ``"file"``             | a file of the user's: it must stay, unmoved                                      |
| ``"other"``            | another command's marked output                                                  |
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from repro import models, outdir
from repro.__main__ import main

NOT_UTF8 = b'[{"normal": "After J\xf6hn and Mary"}]'
SEED = {"normal": "After John and Mary went to the store, John gave the bag to",
        "corrupted": "After John and Mary went to the store, Mary gave the bag to", "io": " Mary", "s": " John"}
USER_FILES = {"notes.txt": b"my notes", "thesis.tex": b"\\chapter{Results}"}


@dataclass(frozen=True)
class Try:
    id: str
    argv: tuple[str, ...]  # after `python -m repro`; {out} is --out, {tmp} the test's folder
    message: str  # a regex the one line on stderr must contain
    out: str = "earlier"
    files: dict[str, bytes] = field(default_factory=dict)  # written under {tmp} before the call
    env: dict[str, str] = field(default_factory=dict)
    marker: str = ""  # the command named in an earlier run's marker (default: the try's command)

    @property
    def command(self) -> str:
        return self.marker or " ".join(self.argv[:2] if self.argv[0] == "lm" else self.argv[:1])


def _out_tries() -> list[Try]:
    """Every command that writes a folder, with --out holding what it must not replace."""
    commands = {  # command -> (argv before the out flag, the out flag, marker name)
        "ioi": (("ioi",), "--out", "ioi"),
        "split": (("split",), "--out", "split"),
        "sdc": (("sdc", "--sweep", "bit_sweep"), "--out", "sdc"),
        "gradsim": (("gradsim",), "--output_dir", "gradsim"),
        "hybrid": (("hybrid",), "--out", "hybrid"),
        "lm-compare": (("lm", "compare"), "--out", "lm compare"),
        "lm-finetune": (("lm", "finetune"), "--out", "lm finetune"),
    }
    rows = []
    for name, (argv, flag, marker) in commands.items():
        args = (*argv, flag, "{out}")
        other = "ioi" if marker != "ioi" else "split"
        rows += [
            Try(f"{name}-out-is-a-file", args, rf"error: {flag} .*out is a file, not a folder; a run never replaces "
                rf"a file: move it away or choose another {flag}\.$", out="file"),
            Try(f"{name}-out-holds-user-files", args, rf"error: {flag} .*out is a folder this suite did not write \(it "
                rf"holds notes.txt, thesis.tex\); choose another {flag}, or add --force to replace it", out="user"),
            Try(f"{name}-out-holds-another-commands-output", args, rf"holds the output of `python -m repro {other}`, "
                rf"not of `{marker}`", out="other", marker=other),
            Try(f"{name}-out-under-proc", (*argv, flag, "/proc/repro-battery/out"), r"parent folder "
                r"/proc/repro-battery is not writable \(/proc is on the proc file system mounted at /proc, which "
                r"takes no new files\); choose another folder\.$", out="none"),
        ]
    return rows


TRIES = [
    *_out_tries(),
    # split: the timing pairs must be able to give an interval; cut and length are positive
    Try("split-pairs-1", ("split", "--pairs", "1", "--out", "{out}"),
        r"argument --pairs: 1 is out of range; give 20\.\.10000 \(fewer cannot pass the verdict's gate\)"),
    Try("split-pairs-0", ("split", "--pairs", "0", "--out", "{out}"), r"argument --pairs: 0 is out of range"),
    Try("split-cut-0", ("split", "--cut", "0", "--out", "{out}"), r"argument --cut: 0 is out of range; give >= 1"),
    Try("split-seq-len-x", ("split", "--seq-len", "six", "--out", "{out}"),
        r"argument --seq-len: 'six' is not an integer"),
    # ioi's flags
    Try("ioi-n-pairs-0", ("ioi", "--n-pairs", "0", "--out", "{out}"), r"argument --n-pairs: 0 is out of range; give 1\.\.1000"),
    Try("ioi-n-pairs-1001", ("ioi", "--n-pairs", "1001", "--out", "{out}"), r"argument --n-pairs: 1001 is out of range"),
    Try("ioi-pair-seed-negative", ("ioi", "--pair-seed", "-1", "--out", "{out}"),
        r"argument --pair-seed: -1 is out of range; give >= 0 \(random.Random treats -s as s\)"),
    Try("ioi-corruption-unknown", ("ioi", "--corruption", "shuffle", "--out", "{out}"), r"invalid choice: 'shuffle'"),
    # ioi's pairs file, through the checked reader
    Try("ioi-pairs-not-utf8", ("ioi", "--pairs", "{tmp}/pairs.json", "--out", "{out}"),
        r"IOI pairs file .*pairs.json is not UTF-8 text \(byte 0xf6 on line 1\); save it as UTF-8\.$",
        files={"pairs.json": NOT_UTF8}),
    Try("ioi-pairs-missing", ("ioi", "--pairs", "{tmp}/nothing.json", "--out", "{out}"),
        r"IOI pairs file .*nothing.json does not exist\.$"),
    Try("ioi-pairs-a-folder", ("ioi", "--pairs", "{tmp}", "--out", "{out}"), r"is a folder, not a file\.$"),
    Try("ioi-pairs-not-json", ("ioi", "--pairs", "{tmp}/pairs.json", "--out", "{out}"),
        r"is not valid JSON \(Expecting value at line 1, column 1\)", files={"pairs.json": b"pairs!"}),
    Try("ioi-pairs-an-object", ("ioi", "--pairs", "{tmp}/pairs.json", "--out", "{out}"),
        r"pairs.json: expected a non-empty JSON list of pair objects .*, got an object",
        files={"pairs.json": json.dumps({"pairs": [SEED]}).encode()}),
    Try("ioi-pairs-entry-a-number", ("ioi", "--pairs", "{tmp}/pairs.json", "--out", "{out}"),
        r"pairs.json entry 1 must be an object, got an integer 7", files={"pairs.json": json.dumps([SEED, 7]).encode()}),
    Try("ioi-pairs-field-a-number", ("ioi", "--pairs", "{tmp}/pairs.json", "--out", "{out}"),
        r"pairs.json entry 0: field 'io' must be a string, got an integer 3",
        files={"pairs.json": json.dumps([{**SEED, "io": 3}]).encode()}),
    Try("ioi-pairs-field-missing", ("ioi", "--pairs", "{tmp}/pairs.json", "--out", "{out}"),
        r"pairs.json entry 0: missing field 's'",
        files={"pairs.json": json.dumps([{k: v for k, v in SEED.items() if k != "s"}]).encode()}),
    Try("ioi-pairs-over-the-cap", ("ioi", "--pairs", "{tmp}/pairs.json", "--out", "{out}"),
        r"holds 1001 pairs; a run takes at most 1000", files={"pairs.json": json.dumps([SEED] * 1001).encode()}),
    # a model folder whose config.json is not an object (gradsim's --model_path reads it before any weight)
    Try("gradsim-config-json-a-list", ("gradsim", "--model_path", "{tmp}/model", "--output_dir", "{out}"),
        r"model config .*model/config.json must be an object, got a list \[\]", files={"model/config.json": b"[]"}),
    Try("gradsim-config-json-not-utf8", ("gradsim", "--model_path", "{tmp}/model", "--output_dir", "{out}"),
        r"model/config.json is not UTF-8 text", files={"model/config.json": b'{"model_type": "gpt\xff"}'}),
    # the earlier battery's tries that need no model (issue 7)
    Try("profile-unknown", ("ioi", "--profile", "laptop", "--out", "{out}"), r"Unknown profile 'laptop'; valid profiles: cpu, gpu\.$"),
    Try("profile-unknown-env", ("split", "--out", "{out}"), r"Unknown profile 'laptop'", env={"REPRO_PROFILE": "laptop"}),
    Try("optional-models-unknown", ("sdc", "--sweep", "bit_sweep", "--out", "{out}"),
        r"\$REPRO_OPTIONAL_MODELS names 'gpt3', not a model of profile 'cpu'", env={"REPRO_OPTIONAL_MODELS": "gpt3"}),
    Try("model-unknown", ("ioi", "--model", "gpt3", "--out", "{out}"), r"argument --model: invalid choice: 'gpt3'"),
    Try("out-parent-a-file", ("split", "--out", "{tmp}/a-file/sub/out"),
        r"--out's parent folder .*a-file/sub is not writable \(.*a-file is a file, not a folder\)",
        files={"a-file": b"x"}, out="none"),
    Try("command-unknown", ("iol",), r"python -m repro: error: argument command: invalid choice: 'iol'", out="none"),
    Try("report-no-results", ("report", "gpu"), r"No results for profile 'gpu'", out="none",
        env={"REPRO_REPORTS_DIR": "{tmp}/reports"}),
]


def _fingerprint(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with its kind and content hash: any change, addition or removal shows."""
    seen = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        seen[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return seen


def _set_up_out(out: Path, kind: str, marker: str) -> None:
    if kind == "file":
        out.write_bytes(b"%PDF my paper")
    elif kind == "user":
        out.mkdir()
        for name, data in USER_FILES.items():
            (out / name).write_bytes(data)
    elif kind in ("earlier", "other"):  # a finished run's folder, marked as the suite marks it
        out.mkdir()
        (out / "summary.json").write_text('{"verdict": "REPRODUCED"}')
        outdir.write_marker(out, marker)


@pytest.fixture
def no_model_loads(monkeypatch):
    """Every way a command loads a model fails the test: validation must come first."""
    import repro.ioi.cli
    import repro.sdc.cli
    import repro.split.cli

    def refuse(*args, **kwargs):
        raise AssertionError(f"a model was loaded before the bad input was found: {args}")

    for module in (models, repro.ioi.cli, repro.sdc.cli, repro.split.cli):
        monkeypatch.setattr(module, "load_model", refuse)
    monkeypatch.setattr(models, "load_model_path", refuse)


@pytest.mark.parametrize("attempt", TRIES, ids=[t.id for t in TRIES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(attempt, tmp_path, monkeypatch, capsys, no_model_loads):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same answers on a GPU machine
    for name, data in attempt.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    out = tmp_path / "out"
    _set_up_out(out, attempt.out, attempt.command)
    for name, value in attempt.env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    before = _fingerprint(tmp_path)
    argv = [a.format(out=out, tmp=tmp_path) for a in attempt.argv]
    try:
        code = main(argv)
    except SystemExit as refused:  # argparse's own checks (choices, int_in) exit before the command runs
        code = refused.code
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.err.count("\n") == 1 and captured.err.endswith("\n"), captured.err
    assert "Traceback" not in captured.err + captured.out
    assert captured.err.startswith("python -m repro") and "error: " in captured.err
    assert re.search(attempt.message, captured.err.strip()), captured.err
    assert _fingerprint(tmp_path) == before  # nothing written, moved or deleted, no staging folder left
    assert not Path("/proc/repro-battery").exists()


def _interrupted_import(name, *args):
    raise KeyboardInterrupt


def _interrupted_import_turned_into_another_error(name, *args):
    """numpy, interrupted half-way through its import, answers the next import with an AttributeError."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    except KeyboardInterrupt:
        raise AttributeError("module 'numpy._core' has no attribute '_multiarray_umath'") from None


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler, as in a terminal (a test run started in the background inherits SIG_IGN)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("import_module", [_interrupted_import, _interrupted_import_turned_into_another_error])
def test_ctrl_c_while_the_command_is_imported_is_one_line_and_exit_130(monkeypatch, capsys, import_module, python_sigint):
    """A Ctrl-C lands in torch's, scipy's or transformers' imports more often than anywhere else."""
    import importlib

    monkeypatch.setattr(importlib, "import_module", import_module)
    assert main(["ioi", "--out", "x"]) == 130
    assert capsys.readouterr().err == "python -m repro ioi: interrupted before the command started; nothing was written.\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_error_after_the_command_started_is_not_taken_for_a_ctrl_c(monkeypatch, python_sigint):
    """Once the command runs, guarded reports Ctrl-C; any other error is the command's (a bug: traceback)."""
    import importlib

    class Command:
        main = staticmethod(_interrupted_import_turned_into_another_error)

    monkeypatch.setattr(importlib, "import_module", lambda name: Command)
    with pytest.raises(AttributeError):
        main(["ioi"])

"""repro.cli: bad input is one line on stderr and exit status 2, found before any model is loaded.

| input                                   | message (one line)                                                   |
|-----------------------------------------|----------------------------------------------------------------------|
| --profile laptop / REPRO_PROFILE=laptop | Unknown profile 'laptop'; valid profiles: cpu, gpu.                   |
| --profile gpu without CUDA              | profile 'gpu' needs a CUDA GPU, but torch ... sees none; use ...       |
| REPRO_OPTIONAL_MODELS=gpt3              | $REPRO_OPTIONAL_MODELS names 'gpt3', not a model of profile ...; valid |
| --out whose parent cannot be written    | --out's parent folder ... is not writable (...); choose another folder |
"""

import argparse
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from repro import cli, outdir
from repro.assets import AssetError
from repro.cli import EXIT_BAD_INPUT, UserError, guarded, prepare, resolve_profile
from repro.files import staged_dir


def test_an_unknown_profile_lists_the_valid_ones(monkeypatch):
    with pytest.raises(UserError, match=r"^Unknown profile 'laptop'; valid profiles: cpu, gpu\.$"):
        resolve_profile("laptop")
    monkeypatch.setenv("REPRO_PROFILE", "laptop")
    with pytest.raises(UserError, match=r"Unknown profile 'laptop'"):
        resolve_profile(None)


def test_the_gpu_profile_without_cuda_says_what_to_do(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=r"profile 'gpu' needs a CUDA GPU, but torch .* sees none; use --profile cpu"):
        resolve_profile("gpu")
    assert resolve_profile("gpu", check_device=False).name == "gpu"  # e.g. `report gpu` on a laptop


def test_a_bad_optional_models_override_is_a_user_error(monkeypatch):
    monkeypatch.setenv("REPRO_OPTIONAL_MODELS", "gpt3")
    with pytest.raises(UserError, match=r"REPRO_OPTIONAL_MODELS names 'gpt3'.*valid: gpt2-random, smollm2-135m, gpt2"):
        resolve_profile("cpu")


def _args(out: Path, profile: str = "cpu") -> argparse.Namespace:
    return argparse.Namespace(profile=profile, out=out, model="gpt2-random", quiet=False, force=False)


@pytest.fixture(autouse=True)
def _a_running_command():
    with outdir.running("demo"):  # as guarded("demo", ...) does around a command's body
        yield


def test_prepare_refuses_an_out_folder_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder inside a file cannot be made, even by root
    with pytest.raises(UserError, match=r"^--out's parent folder .*a-file/sub is not writable \(.*\); choose another folder\.$"):
        prepare(_args(blocker / "sub" / "out"))


def test_prepare_creates_the_out_parent_and_leaves_nothing_behind(tmp_path):
    assert prepare(_args(tmp_path / "new" / "out")).name == "cpu"
    assert (tmp_path / "new").is_dir() and list((tmp_path / "new").iterdir()) == []


def test_prepare_checks_the_profile_before_the_folder(tmp_path):
    with pytest.raises(UserError, match="Unknown profile"):
        prepare(_args(tmp_path / "a-file-that-does-not-matter" / "out", profile="laptop"))


@pytest.mark.parametrize("error", [UserError("--pairs x.json: bad"), AssetError("Data file not found: looked for y")])
def test_guarded_turns_bad_input_into_one_line_and_exit_2(capsys, error):
    def body():
        raise error

    assert guarded("demo", body) == EXIT_BAD_INPUT == 2
    captured = capsys.readouterr()
    assert captured.err == f"python -m repro demo: error: {error}\n" and captured.out == ""


def test_guarded_reports_an_interrupt_in_one_line_saying_what_was_kept(capsys):
    def body():
        raise KeyboardInterrupt

    assert guarded("demo", body) == 130
    assert capsys.readouterr().err == ("python -m repro demo: interrupted; nothing of this run was kept (outputs "
                                       "replace --out only when a run completes).\n")
    resumes = "the 12 finished faults are kept in out-log; run the same command again to resume"
    assert guarded("demo", body, on_interrupt=resumes) == 130
    assert capsys.readouterr().err == f"python -m repro demo: interrupted; {resumes}.\n"
    assert guarded("demo", body, on_interrupt=lambda: "checkpoint kept.") == 130  # computed when it happens
    assert capsys.readouterr().err == "python -m repro demo: interrupted; checkpoint kept.\n"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_remove_the_staging_folder_as_ctrl_c_does(tmp_path, capsys, signum):
    """`timeout` and `kill` send SIGTERM, a closed terminal SIGHUP: without a handler Python dies at once and
    leaves `.out.staging-XXXX` behind."""
    out = tmp_path / "out"

    def body():
        with staged_dir(out) as staging:
            (staging / "half.json").write_text("{")
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler raises in the main thread long before this ends
        return 0

    before = signal.getsignal(signum)
    assert guarded("demo", body) == 128 + signum
    assert capsys.readouterr().err == (f"python -m repro demo: stopped by {signum.name}; nothing of this run was "
                                       "kept (outputs replace --out only when a run completes).\n")
    assert list(tmp_path.iterdir()) == []  # no staging folder, no --out
    assert signal.getsignal(signum) == before  # the handler is the run's only


def test_numeric_flags_are_refused_by_argparse_in_one_line(capsys):
    parser = cli.claim_parser("demo", "A demo.", models=("gpt2",), default_model="gpt2", default_out="out")
    parser.add_argument("--pairs", type=cli.int_in(10, 100, note="the reason"))
    parser.add_argument("--rate", type=cli.float_in(0.5))
    assert parser.parse_args(["--pairs", "10", "--rate", "0.5"]).pairs == 10
    for argv, message in [
        (["--pairs", "1"], "argument --pairs: 1 is out of range; give 10..100 (the reason)"),
        (["--pairs", "1e3"], "argument --pairs: '1e3' is not an integer; give 10..100 (the reason)"),
        (["--rate", "nan"], "argument --rate: nan is out of range; give >= 0.5"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(argv)
        assert exit_.value.code == 2
        assert capsys.readouterr().err == f"python -m repro demo: error: {message}; see python -m repro demo --help\n"


def test_guarded_lets_bugs_through_with_their_traceback():
    def body():
        raise ZeroDivisionError  # not bad input: a bug, whose traceback the developer needs

    with pytest.raises(ZeroDivisionError):
        guarded("demo", body)
    assert guarded("demo", lambda: 0) == 0


def test_claim_parser_lists_the_valid_models(capsys):
    parser = cli.claim_parser("demo", "A demo.", models=("gpt2", "gpt2-random"), default_model="gpt2", default_out="out")
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--model", "gpt3"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err  # one line naming the valid choices (no usage block)
    assert "invalid choice: 'gpt3'" in err and "gpt2-random" in err and err.count("\n") == 1


def test_quiet_silences_library_bars_and_warnings_for_the_run_only(capfd):
    """--quiet: transformers' "Loading weights" bar and a matplotlib warning used to reach stderr anyway."""
    import warnings

    import transformers.utils.logging as hf_logging

    def body():
        cli.quiet_libraries()
        for _ in hf_logging.tqdm(range(3), desc="Loading weights"):  # the bar from_pretrained shows
            pass
        hf_logging.get_logger("transformers").warning("a library's log warning")
        with warnings.catch_warnings(record=True) as shown:
            warnings.warn("Glyph 8722 missing from font(s) DejaVu Sans.", UserWarning, stacklevel=1)  # matplotlib's
        return len(shown)

    assert hf_logging.is_progress_bar_enabled()
    assert guarded("demo", body) == 0
    assert capfd.readouterr().err == ""
    assert hf_logging.is_progress_bar_enabled() and os.environ.get("TQDM_DISABLE") is None  # restored after the run

import json
from pathlib import Path

import pytest

from repro.profiles import OPTIONAL_ENV, PROFILE_ENV, PROFILES, get_profile


def test_default_is_cpu(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    assert get_profile().name == "cpu"


def test_environment_variable_selects(monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, "gpu")
    assert get_profile().name == "gpu"


def test_explicit_name_wins_over_environment(monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, "gpu")
    assert get_profile("cpu").name == "cpu"


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown profile 'laptop'; valid profiles: cpu, gpu"):
        get_profile("laptop")


def test_profiles_are_well_formed():
    for profile in PROFILES.values():
        assert not set(profile.required_models) & set(profile.optional_models)
        assert profile.split.pairs >= 30  # the minimum number of timing pairs
    assert PROFILES["cpu"].device == "cpu" and PROFILES["gpu"].device == "cuda"


def test_unknown_profile_is_a_pytest_usage_error(pytester):
    claims = Path(__file__).parents[1] / "claims"
    result = pytester.runpytest_subprocess(str(claims), "--profile=laptop", "--collect-only", "-q")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*Unknown profile 'laptop'; valid profiles: cpu, gpu*"])


def test_optional_models_override_makes_a_required_model_optional(monkeypatch):
    """A GPU machine without GPT-2 weights: REPRO_OPTIONAL_MODELS=gpt2 turns the failure into NOT_RUN."""
    monkeypatch.setenv(OPTIONAL_ENV, "gpt2")
    gpu = get_profile("gpu")
    assert not gpu.requires("gpt2") and "gpt2" in gpu.optional_models
    assert gpu.required_models == ("gpt2-random", "smollm2-135m") and gpu.ioi == PROFILES["gpu"].ioi
    assert get_profile("cpu") == PROFILES["cpu"]  # gpt2 is optional there already
    monkeypatch.setenv(OPTIONAL_ENV, " gpt2 , smollm2-135m ")
    assert get_profile("gpu").required_models == ("gpt2-random",)
    monkeypatch.delenv(OPTIONAL_ENV)
    assert get_profile("gpu").requires("gpt2")


def test_optional_models_override_refuses_unknown_keys(monkeypatch):
    monkeypatch.setenv(OPTIONAL_ENV, "gpt3")
    with pytest.raises(ValueError, match=r"\$REPRO_OPTIONAL_MODELS names 'gpt3', not a model of profile 'gpu'; "
                                         r"valid: gpt2, gpt2-random, smollm2-135m\."):
        get_profile("gpu")


def test_a_missing_required_model_fails_the_run_unless_made_optional(pytester, tmp_path, monkeypatch):
    """End to end through claims/conftest.py: smollm2-135m (required at cpu) cannot be built here, because
    its cache folder lies inside a file. Without the override the claim fails; with it, the claim is
    recorded as NOT_RUN with the reason and the run passes."""
    claims = Path(__file__).parents[1] / "claims"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("REPRO_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setenv("REPRO_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.delenv("REPRO_GPT2_PATH", raising=False)
    args = (str(claims / "test_ioi.py"), "--profile=cpu", "-k", "smollm2", "-p", "no:cacheprovider")
    failed = pytester.runpytest_subprocess(*args)
    assert failed.ret != 0
    failed.stdout.fnmatch_lines(["*Model 'smollm2-135m' is required by profile 'cpu'*not writable*"])
    monkeypatch.setenv(OPTIONAL_ENV, "smollm2-135m")
    passed = pytester.runpytest_subprocess(*args)
    assert passed.ret == 0
    record = json.loads((tmp_path / "reports" / "cpu" / "results" / "ioi__smollm2-135m.json").read_text())
    assert record["measurement"]["verdict"] == "NOT_RUN" and "is not writable" in record["reason"]

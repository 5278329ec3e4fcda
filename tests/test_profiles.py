from pathlib import Path

import pytest

from repro.profiles import PROFILE_ENV, PROFILES, get_profile


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

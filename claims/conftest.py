"""Fixtures every claim module uses: the profile, the claim runner and the tolerant snapshot check."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from repro.assets import AssetError, data_sha256s
from repro.models import LoadedModel, load_model
from repro.profiles import Profile, get_profile
from repro.results import (
    REPORTS_ENV,
    ClaimRecord,
    figures_dir,
    not_run,
    profile_dir,
    provenance,
    write_record,
)
from repro.snapshots import mismatches, tolerant_json_extension
from repro.verdicts import Claim, ClaimResult

TORCH_SEED = 0  # torch's global seed, set before every experiment


def pytest_addoption(parser):
    group = parser.getgroup("repro", "reproduction suite")
    group.addoption("--profile", default=None, help="run profile: cpu (default, or $REPRO_PROFILE) or gpu")
    group.addoption(
        "--strict-snapshots",
        action="store_true",
        help="fail (instead of skip) when a model has no reference snapshot",
    )


def pytest_configure(config):
    try:
        profile = get_profile(config.getoption("--profile"))
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None
    if profile.device == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(
            f"Profile {profile.name!r} needs a CUDA GPU, but torch {torch.__version__} sees none. "
            "Use --profile cpu, or install a CUDA build of torch on a GPU machine (REPRO_TORCH_SPEC for nox)."
        )
    config.repro_profile = profile


def pytest_report_header(config):
    p = config.repro_profile
    return f"repro profile: {p.name} (device {p.device}, {p.dtype}); torch threads: {torch.get_num_threads()}"


@pytest.fixture(scope="session")
def profile(pytestconfig) -> Profile:
    return pytestconfig.repro_profile


@pytest.fixture(scope="session")
def reports_root(pytestconfig) -> Path:
    return Path(os.environ.get(REPORTS_ENV, pytestconfig.rootpath / "reports"))


@dataclass
class Outcome:
    """One claim run on one model: the experiment's own result object and the record for the report."""

    result: Any
    record: ClaimRecord


Experiment = Callable[[LoadedModel | None, Profile, Path], ClaimResult]


@pytest.fixture(scope="module")
def run_claim(profile, reports_root):
    """``run_claim(claim, subject, expected, experiment, data=(), pretrained=True)`` -> Outcome; records are
    saved at module end. ``subject`` is a registered model key, whose model is loaded and handed to the
    experiment; with ``pretrained=False`` it is just the row's name (e.g. models trained from scratch) and
    the experiment gets ``None``.

    A required model that is missing fails the run; an optional one is recorded as NOT_RUN and skipped.
    """
    records: list[ClaimRecord] = []

    def run(claim: Claim, model_key: str, expected: dict, experiment: Experiment, data: tuple[str, ...] = (),
            pretrained: bool = True) -> Outcome:
        declared = expected[model_key][profile.name]
        try:
            lm = load_model(model_key, profile.device, profile.dtype) if pretrained else None
        except AssetError as err:
            if profile.requires(model_key):
                pytest.fail(f"Model {model_key!r} is required by profile {profile.name!r}: {err}", pytrace=False)
            write_record(not_run(claim, model_key, profile.name, declared, str(err)), reports_root)
            pytest.skip(f"{model_key} not available: {err}")
        torch.manual_seed(TORCH_SEED)
        result = experiment(lm, profile, figures_dir(profile.name, reports_root))
        if not isinstance(result, ClaimResult):
            raise TypeError(f"{claim.key}: the experiment returned {type(result).__name__}, not a ClaimResult.")
        measurement = result.measurement()
        base = profile_dir(profile.name, reports_root)
        measurement.figures = [Path(os.path.relpath(f, base)) for f in measurement.figures]
        hashes = {k: v for prefix in data for k, v in data_sha256s(prefix).items()}
        record = ClaimRecord(
            claim, model_key, profile.name, declared, measurement,
            provenance=provenance(
                model_source=lm.source if lm else "trained by the experiment",
                model_sha256=lm.sha256 if lm else None,
                data_sha256=hashes,
            ),
        )
        records.append(record)
        return Outcome(result, record)

    yield run
    for record in records:  # after the module's tests, so the snapshot status is known
        write_record(record, reports_root)


@pytest.fixture
def check_snapshot(snapshot, request, profile):
    """``check_snapshot(outcome, data, rel=1e-3, abs=1e-6)``: compare with the committed per-profile snapshot."""
    config = request.config

    def check(outcome: Outcome, data: dict, rel: float = 1e-3, abs: float = 1e-6) -> None:
        assertion = snapshot.use_extension(tolerant_json_extension(rel, abs))(name=profile.name)
        location = Path(assertion.extension.get_location(test_location=assertion.test_location, index=assertion.index))
        updating = config.option.update_snapshots
        before = location.read_text() if location.exists() else None
        if before is None and not updating and not config.getoption("--strict-snapshots"):
            outcome.record.snapshot = "no reference snapshot"
            pytest.skip(f"No reference snapshot for {outcome.record.model} at {location} (--snapshot-update records one).")
        matched = data == assertion
        if updating:
            outcome.record.snapshot = "updated" if location.exists() and location.read_text() != before else "matched"
        else:
            outcome.record.snapshot = "matched" if matched else "mismatch"
        if not matched and before is None:
            pytest.fail(f"No reference snapshot for {outcome.record.model} at {location} (--strict-snapshots); "
                        "record one with --snapshot-update and commit it.", pytrace=False)
        if not matched:
            new = json.loads(assertion.extension.serialize(data))  # as stored: rounded like the snapshot
            moved = mismatches(new, json.loads(before), rel=rel, abs=abs)
            pytest.fail(moved_numbers(f"{outcome.record.model} at profile {profile.name}", location, moved, rel, abs),
                        pytrace=False)

    return check


def moved_numbers(what: str, location: Path, moved: list[str], rel: float, abs: float) -> str:
    """A snapshot failure that lists every number that moved (path: new != snapshot, with the tolerance),
    not just "differs", so an upgrade's effect can be read off the failure."""
    return (
        f"{what}: {len(moved)} number(s) moved beyond the tolerance (rel {rel}, abs {abs}) from {location}; "
        "each line is `path: new != snapshot`:\n  " + "\n  ".join(moved)
        + "\nIf the change is intended, record it with --snapshot-update and review the diff."
    )


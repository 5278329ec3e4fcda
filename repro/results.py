"""Result records: one JSON file per claim × model × profile, written atomically, with provenance.

Layout under the reports root (``reports/`` by default):
``<profile>/results/<claim>__<model>.json``, ``<profile>/figures/*.png`` and ``<profile>/report.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import re
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

from repro import lock
from repro.files import write_json_atomic, write_text_atomic  # noqa: F401 (re-exported)
from repro.verdicts import (
    Claim,
    KeyNumber,
    Measurement,
    Verdict,
    interval_from_dict,
    ruling_from_dict,
    with_estimates,
)

REPORTS_ENV = "REPRO_REPORTS_DIR"
PACKAGES = ("torch", "transformers", "numpy", "scipy", "pandas", "matplotlib", "syrupy", "gguf", "safetensors")


def reports_root() -> Path:
    return Path(os.environ.get(REPORTS_ENV, "reports"))


def profile_dir(profile: str, root: Path | None = None) -> Path:
    return (root or reports_root()) / profile


def figures_dir(profile: str, root: Path | None = None) -> Path:
    path = profile_dir(profile, root) / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir(profile: str, root: Path | None = None) -> Path:
    return profile_dir(profile, root) / "results"


@dataclasses.dataclass
class ClaimRecord:
    claim: Claim
    model: str
    profile: str
    expected: Verdict
    measurement: Measurement
    reason: str = ""  # why NOT_RUN, if it was not run
    snapshot: str = "not compared"  # matched | updated | no reference snapshot | mismatch | not compared
    provenance: dict = dataclasses.field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        return self.measurement.verdict

    @property
    def path_name(self) -> str:
        return f"{self.claim.key}__{self.model}.json"

    def summary(self) -> str:
        k = self.measurement.key_number
        return (
            f"claim {self.claim.number} ({self.claim.key}) on {self.model} at profile {self.profile}: measured "
            f"{self.verdict.value}, declared {self.expected.value}; {k.name} = {k.ours} {k.unit} "
            f"(published {k.published}); criteria {self.measurement.criteria}"
        )


def not_run(claim: Claim, model: str, profile: str, expected: Verdict, reason: str) -> ClaimRecord:
    measurement = Measurement(Verdict.NOT_RUN, KeyNumber("not run", None, None))
    return ClaimRecord(claim, model, profile, expected, measurement, reason=reason, provenance=provenance())


# ---- serialisation: repro.files writes every file atomically ----


def write_record(record: ClaimRecord, root: Path | None = None) -> Path:
    return write_json_atomic(results_dir(record.profile, root) / record.path_name, record)


def record_from_json(data: dict) -> ClaimRecord:
    m = dict(data["measurement"])
    m["verdict"] = Verdict(m["verdict"])
    key = dict(m["key_number"])
    key["interval"] = interval_from_dict(key["interval"]) if key.get("interval") else None
    m["key_number"] = KeyNumber(**key)
    m["ruling"] = ruling_from_dict(m["ruling"]) if m.get("ruling") else None
    m["criteria"], m["numbers"] = with_estimates(m.get("criteria", {})), with_estimates(m.get("numbers", {}))
    m["figures"] = [Path(p) for p in m.get("figures", [])]
    return ClaimRecord(
        claim=Claim(**data["claim"]),
        model=data["model"],
        profile=data["profile"],
        expected=Verdict(data["expected"]),
        measurement=Measurement(**m),
        reason=data.get("reason", ""),
        snapshot=data.get("snapshot", "not compared"),
        provenance=data.get("provenance", {}),
    )


RECORD_NAME = re.compile(r"\w[\w-]*?__[\w.-]+\.json")  # <claim>__<model>.json (ClaimRecord.path_name)
TEMPORARY = re.compile(r"\..+\.tmp")  # repro.files.write_atomic's temporary files: a write in progress


def load_records(profile: str, root: Path | None = None) -> list[ClaimRecord]:
    """Every saved record of a profile, ordered by claim number then model.

    Only files named ``<claim>__<model>.json`` whose contents are that claim, model and profile are read;
    anything else in ``results/`` is an error naming the file, so a stray or copied file never becomes a
    row of the report."""
    folder = results_dir(profile, root)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"No results for profile {profile!r} in {folder}; run `nox -s {profile}` first to produce them."
        )
    records = []
    for path in sorted(folder.iterdir()):
        if TEMPORARY.fullmatch(path.name):
            continue
        if not RECORD_NAME.fullmatch(path.name) or not path.is_file():
            raise ValueError(
                f"{path} is not a result record (only <claim>__<model>.json files belong in {folder}); "
                f"move it elsewhere and re-run the report."
            )
        try:
            record = record_from_json(json.loads(path.read_text("utf-8")))
        except (KeyError, TypeError, ValueError) as err:  # JSON and UnicodeDecodeError are ValueErrors
            raise ValueError(f"{path} is not a valid result record ({err}); delete it and re-run the claim.") from err
        if path.name != record.path_name:
            raise ValueError(
                f"{path} holds claim {record.claim.key!r} on model {record.model!r}, not what its name says; "
                f"delete it (or rename it to {record.path_name}) and re-run the report."
            )
        if record.profile != profile:
            raise ValueError(
                f"{path} is a record of profile {record.profile!r}, not {profile!r}; delete it (or move it to "
                f"{results_dir(record.profile, root)}) and re-run the report."
            )
        records.append(record)
    return sorted(records, key=lambda r: (r.claim.number, r.model))


# ---- provenance ----


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


@cache
def _lock_provenance() -> dict:
    """The committed lock's sha256 and each installed package whose version differs from it: an empty
    drift means the environment is the locked one (``REPRO_UNLOCKED=1`` or a hand-made venv shows here)."""
    digest = lock.sha256()
    if digest is None:
        return {"lock_sha256": None, "lock_drift": f"unknown: no lock at {lock.SUITE_LOCK}"}
    installed = {lock.canonical(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}
    return {"lock_sha256": digest, "lock_drift": "; ".join(lock.drift(lock.read_lock(), installed)) or "none"}


def provenance(**extra) -> dict:
    """Where a number came from: code, packages (and the lock they were installed from), machine and time
    (plus model/data hashes via ``extra``)."""
    import torch

    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {
        "git_commit": commit + ("+dirty" if dirty and commit != "unknown" else ""),
        "packages": {p: _version(p) for p in PACKAGES},
        **_lock_provenance(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }

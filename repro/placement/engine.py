"""The engine: a Dask cluster of one scheduler and two workers, ``local`` and ``remote``, across the link.

Each worker advertises its site as a Dask resource (``--resources local=1`` / ``remote=1``); a stage is
submitted with ``resources={site: 1}``, so the scheduler runs it on that site's worker and nowhere else, and
moves its inputs there from whichever worker holds them. Resources, unlike worker addresses, survive a
worker restart, so a task lost with a killed worker is retried on its replacement.

``Cluster(link, local=..., remote=...)`` starts the scheduler and the local worker in the local namespace,
the remote worker in the remote one (with a nanny that restarts it if it dies), and a client that talks to
the scheduler from the local namespace. ``Cluster.connect(address)`` uses an existing cluster instead (a real
GPU box: start ``dask scheduler`` on one machine and ``dask worker tcp://host:8786 --resources local=1`` /
``--resources remote=1`` on the two sites). Either way the scheduler's Active Memory Manager is stopped, so
no replica moves or disappears behind the placement's back. Processes this module starts are stopped on
exit, error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from repro.placement.link import Link
from repro.placement.placement import SITES

START_TIMEOUT_S = 120  # a worker's start, import and registration on a busy 2-core machine


class EngineError(RuntimeError):
    """The cluster could not run the pipeline; the message says which site or stage and what to do."""


@dataclass(frozen=True)
class WorkerSpec:
    """How a site's worker process is started (``threads``: torch intra-op threads of its one task slot)."""

    threads: int = 1
    nanny: bool = True  # restart the worker process if it dies


def _repo_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def worker_env(threads: int) -> dict[str, str]:
    """The worker's environment: the suite importable, its thread count, and no comm compression, so the
    bytes on the link are the bytes of the data (what the cost model counts)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_repo_root(), env.get("PYTHONPATH", "")) if p)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["DASK_DISTRIBUTED__COMM__COMPRESSION"] = "False"
    env["DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING"] = "False"  # placement is the experiment
    env["TQDM_DISABLE"] = "1"
    return env


@contextmanager
def signals_held() -> Iterator[None]:
    """Defer Ctrl-C and SIGTERM while tearing down, so a second signal cannot cut the teardown short; the
    first one is re-raised afterwards. (Handlers, not a signal mask: the mask is per thread, and the kernel
    may hand the signal to the Dask client's IO thread, whose Python handler then runs in the main thread.)"""
    received: list[int] = []

    def note(signum, frame):
        received.append(signum)

    try:
        previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: nothing to defer
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:
            signal.raise_signal(received[0])


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the main thread, so ``finally`` blocks tear everything down."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Cluster:
    """``with Cluster(link, local=WorkerSpec(1), remote=WorkerSpec(2)) as cluster:`` see the module docstring."""

    def __init__(self, link: Link | None, local: WorkerSpec | None = None, remote: WorkerSpec | None = None,
                 address: str | None = None):
        self.link, self.address = link, address
        self.specs = {"local": local or WorkerSpec(1), "remote": remote or WorkerSpec(2)}
        self.processes: list[subprocess.Popen] = []
        self.client = None
        self._tmp = None

    @classmethod
    def connect(cls, address: str) -> Cluster:
        return cls(None, address=address)

    # ---- start and stop ----

    def __enter__(self) -> Cluster:
        self._signals = sigterm_as_interrupt()
        self._signals.__enter__()
        try:
            if self.address is None:
                self._start_processes()
            self._connect()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _spawn(self, ns: str | None, argv: list[str], env: dict, log: Path) -> subprocess.Popen:
        command = self.link.command_in(ns, argv)
        with open(log, "wb") as out:  # its own session: a terminal's Ctrl-C reaches us, we stop it
            proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(proc)
        return proc

    def _start_processes(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="repro-placement-")
        tmp = Path(self._tmp.name)
        link, sched_file = self.link, tmp / "scheduler.json"
        py = [sys.executable, "-m"]
        self._spawn(link.local_ns, [*py, "distributed.cli.dask_scheduler", "--host", link.local_host, "--port", "0",
                                    "--no-dashboard", "--scheduler-file", str(sched_file)],
                    worker_env(1), tmp / "scheduler.log")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not sched_file.exists():
            self._check_alive(tmp)
            if time.monotonic() > deadline:
                raise EngineError(f"the Dask scheduler did not start within {START_TIMEOUT_S} s; see {tmp}/scheduler.log")
            time.sleep(0.1)
        time.sleep(0.1)  # the file is written whole, but give it a moment
        self.address = json.loads(sched_file.read_text())["address"]
        for site, ns, host in (("local", link.local_ns, link.local_host), ("remote", link.remote_ns, link.remote_host)):
            spec = self.specs[site]
            self._spawn(ns, [*py, "distributed.cli.dask_worker", self.address, "--host", host, "--name", site,
                             "--nthreads", "1", "--nworkers", "1", "--resources", f"{site}=1", "--memory-limit", "0",
                             "--no-dashboard", "--death-timeout", "60", "--nanny" if spec.nanny else "--no-nanny"],
                        worker_env(spec.threads), tmp / f"{site}.log")

    def _check_alive(self, tmp: Path) -> None:
        for proc in self.processes:
            if proc.poll() is not None:
                raise EngineError(f"`{' '.join(proc.args[:8])} ...` exited with {proc.returncode}; logs in {tmp}")

    def _connect(self) -> None:
        from distributed import Client

        context = self.link.in_local_namespace() if self.link else _nothing()
        with context:  # the client's IO thread is started here, so it lives in the local namespace
            self.client = Client(self.address, timeout=START_TIMEOUT_S, set_as_default=False)
        try:
            self.client.wait_for_workers(len(SITES), timeout=START_TIMEOUT_S)
        except TimeoutError:
            raise EngineError(
                f"the scheduler at {self.address} has {len(self.client.scheduler_info()['workers'])} worker(s), "
                f"need one per site {SITES}; start them with `dask worker {self.address} --resources local=1` "
                "(and remote=1)"
            ) from None
        self.site_address()  # every site has a worker
        # The Active Memory Manager drops "superfluous" replicas behind the placement's back: it dropped the
        # workstation's copy of the scattered pairs once the remote worker held one, so a remote crash lost
        # data that nothing could recompute (and the run waited forever). Placement is the experiment: off.
        self.client.amm.stop()
        self.client.get_task_stream(count=1)  # the first call installs the scheduler's task-stream plugin

    def close(self) -> None:
        """Stop the client and every process this cluster started (each by its own process group)."""
        with signals_held():
            self._close()

    def _close(self) -> None:
        if self.client is not None:
            with suppress(Exception):  # a dead cluster must not hide the original error
                self.client.close(timeout=10)
            self.client = None
        for proc in self.processes:
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.processes = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        if getattr(self, "_signals", None) is not None:
            self._signals.__exit__(None, None, None)
            self._signals = None

    # ---- queries ----

    def site_workers(self) -> dict[str, str]:
        """The worker address of each site that has a worker now (found by its resource)."""
        found = {}
        for addr, info in self.client.scheduler_info(n_workers=-1)["workers"].items():
            for s in SITES:
                if info.get("resources", {}).get(s):
                    found[s] = addr
        return found

    def missing_sites(self) -> list[str]:
        """The sites with no worker now (one died and no replacement has joined yet)."""
        return [s for s in SITES if s not in self.site_workers()]

    def site_address(self, site: str | None = None) -> dict[str, str] | str:
        """The worker address of each site, or of one site; EngineError if a site has none."""
        found = self.site_workers()
        missing = [s for s in SITES if s not in found]
        if missing:
            raise EngineError(
                f"no worker offers site(s) {missing} at {self.address}; start one with "
                f"`dask worker {self.address} --resources {missing[0]}=1`"
            )
        return found if site is None else found[site]

    def worker_pid(self, site: str) -> int:
        """The process id of the site's worker (not its nanny): what a fault test kills."""
        addr = self.site_address(site)
        return self.client.run(os.getpid, workers=[addr])[addr]


@contextmanager
def _nothing() -> Iterator[None]:
    yield

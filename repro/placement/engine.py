"""The engine: a Dask cluster of one scheduler and two workers, ``local`` and ``remote``, across the link.

Each worker advertises its site as a Dask resource (``--resources local=1`` / ``remote=1``); a stage is
submitted with ``resources={site: 1}``, so the scheduler runs it on that site's worker and nowhere else, and
moves its inputs there from whichever worker holds them. Resources, unlike worker addresses, survive a
worker restart, so a task lost with a killed worker is retried on its replacement.

A cluster a user can run: the scheduler needs nothing of the suite. Since distributed 2023.4 the scheduler
unpickles every task graph, so a task naming a suite function would need the suite there too; ``submit``
therefore ships a stage as standard-library glue around bytes, ``reduce(call, [pickled stage, input],
pickle.loads)``, which the scheduler unpickles without importing anything of ours and the worker (which has
the suite) turns into ``stage(input)``. The model is loaded by a WorkerPlugin (``stages.ModelPlugin``),
which the scheduler keeps as bytes. The scheduler this module starts proves it: ``repro`` is made
unimportable in it. Every time is the scheduler's: Dask's task stream and transfer logs are kept on its
clock, and ``scheduler_time`` reads it.

``Cluster(link, local=..., remote=..., cgroups=...)`` starts the scheduler and the local worker in the local
namespace, the remote worker in the remote one (with a nanny that restarts it if it dies), each in its site's
cgroups, and a client in the local namespace. ``Cluster.connect(address)`` uses an existing cluster instead;
an unreachable one (or one without a worker per site) is a ``ClusterUnreachable`` within ``connect_timeout_s``. Either way the Active Memory Manager
is paused while the run owns the cluster (it would drop replicas behind the placement's back) and resumed
on the way out if it was running. Processes this module starts die with their parent (``teardown``).
"""

from __future__ import annotations

import functools
import json
import operator
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from repro.cli import stop_on_signals
from repro.placement.link import Link
from repro.placement.placement import SITES
from repro.placement.teardown import child_setup, owner_env, signals_held

START_TIMEOUT_S = 120  # a worker's start, import and model load on a busy 2-core machine
CONNECT_TIMEOUT_S = 10.0  # default for an existing scheduler: a reachable one answers in milliseconds
IDLE_TIMEOUT = "600s"  # a scheduler nobody uses closes itself (a second net under the parent-death signal)
STOP_GRACE_S = 3.0  # SIGTERM, then SIGKILL
# Dask's nanny starts each worker with MALLOC_TRIM_THRESHOLD_=65536, so glibc hands every large tensor a task
# thread frees back to the kernel and faults it in again on the next call: on a 1-core site the IOI Patch
# stage took 3.1-4.0 s instead of 2.1-2.3 s and varied +-20% from run to run, burying the placement effect in
# allocator noise. Workers the suite starts keep glibc's default allocator, as the seed's plain scripts did:
# the variable is unset (None), not set, since any value also switches off glibc's dynamic mmap threshold.
WORKER_DASK_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
# The scheduler as started here: the suite is unimportable in it, so anything that needed it would fail.
SCHEDULER_MAIN = ("import sys; sys.modules['repro'] = None; sys.argv[0] = 'dask-scheduler'; "
                  "from distributed.cli.dask_scheduler import main; main()")


class EngineError(RuntimeError):
    """The cluster could not run the pipeline; the message says which site or stage and what to do."""


class ClusterUnreachable(EngineError):
    """An existing cluster cannot be used: its scheduler does not answer, or a site has no worker."""


@dataclass(frozen=True)
class WorkerSpec:
    """How a site's worker process is started (``threads``: torch intra-op threads of its one task slot)."""

    threads: int = 1
    nanny: bool = True  # restart the worker process if it dies


def _repo_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def process_env(threads: int) -> dict[str, str]:
    """A spawned process's environment: the suite importable, its thread count, no comm compression (the
    bytes on the link are the data's, what the cost model counts), no work stealing (placement is the
    experiment), and the run's owner mark."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_repo_root(), env.get("PYTHONPATH", "")) if p)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["DASK_DISTRIBUTED__COMM__COMPRESSION"] = "False"
    env["DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING"] = "False"
    env["TQDM_DISABLE"] = "1"
    return owner_env(env)


def nested(dotted: dict) -> dict:
    """``{"a.b.c": 1}`` -> ``{"a": {"b": {"c": 1}}}`` (the shape of a Dask config file)."""
    tree: dict = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def portable(func, **kwargs) -> tuple:
    """``(functools.reduce, operator.call, bytes, pickle.loads)``: submitted as ``reduce(call, [bytes, input],
    loads)`` it computes ``loads(bytes)(input)``, i.e. ``func(input, **kwargs)``, on a worker, while the
    scheduler sees only the standard library and bytes (see the module docstring)."""
    return functools.reduce, operator.call, pickle.dumps(functools.partial(func, **kwargs)), pickle.loads


def probe(address: str, timeout_s: float) -> str | None:
    """None when something accepts TCP connections at ``address`` within ``timeout_s``, else why not."""
    parts = urlsplit(address)
    try:
        with socket.create_connection((parts.hostname, parts.port or 8786), timeout=timeout_s):
            return None
    except (OSError, ValueError) as err:
        return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


class Cluster:
    """``with Cluster(link, local=WorkerSpec(1), remote=WorkerSpec(1), cgroups=cg) as cluster:`` see the
    module docstring."""

    def __init__(self, link: Link | None, local: WorkerSpec | None = None, remote: WorkerSpec | None = None, *,
                 cgroups=None, address: str | None = None, connect_timeout_s: float = CONNECT_TIMEOUT_S):
        self.link, self.address, self.cgroups = link, address, cgroups
        self.external = address is not None
        self.connect_timeout_s = connect_timeout_s
        self.specs = {"local": local or WorkerSpec(1), "remote": remote or WorkerSpec(1)}
        self.processes: list[subprocess.Popen] = []
        self.client = None
        self.settings: dict = {}  # the cluster's Dask settings as found
        self._amm_was_running = False
        self._tmp = None
        self._signals = None

    @classmethod
    def connect(cls, address: str, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> Cluster:
        return cls(None, address=address, connect_timeout_s=connect_timeout_s)

    # ---- start and stop ----

    def __enter__(self) -> Cluster:
        self._signals = stop_on_signals()
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

    def _spawn(self, site: str, argv: list[str], env: dict, log: Path) -> subprocess.Popen:
        ns = {"remote": self.link.remote_ns}.get(site, self.link.local_ns)
        join = self.cgroups.join(site) if self.cgroups else ()
        with open(log, "wb") as out:  # its own session: a terminal's Ctrl-C reaches us, we stop it
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=child_setup(join, ns))
        self.processes.append(proc)
        return proc

    def _start_processes(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="repro-placement-")
        tmp = Path(self._tmp.name)
        link, sched_file = self.link, tmp / "scheduler.json"
        config = tmp / "dask.yaml"  # JSON is YAML; Dask adds the file named by DASK_CONFIG to its search path
        config.write_text(json.dumps(nested(WORKER_DASK_CONFIG)))
        self._spawn("scheduler", [sys.executable, "-c", SCHEDULER_MAIN, "--host", link.local_host, "--port", "0",
                                  "--no-dashboard", "--idle-timeout", IDLE_TIMEOUT, "--scheduler-file", str(sched_file)],
                    process_env(1), tmp / "scheduler.log")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not sched_file.exists():
            self._check_alive(tmp)
            if time.monotonic() > deadline:
                raise EngineError(f"the Dask scheduler did not start within {START_TIMEOUT_S} s; see {tmp}/scheduler.log")
            time.sleep(0.1)
        time.sleep(0.1)  # the file is written whole, but give it a moment
        self.address = json.loads(sched_file.read_text())["address"]
        for site, host in (("local", link.local_host), ("remote", link.remote_host)):
            spec = self.specs[site]
            self._spawn(site, [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--host", host,
                               "--name", site, "--nthreads", "1", "--nworkers", "1", "--resources", f"{site}=1",
                               "--memory-limit", "0", "--no-dashboard", "--death-timeout", "60",
                               "--nanny" if spec.nanny else "--no-nanny"],
                        {**process_env(spec.threads), "DASK_CONFIG": str(config)}, tmp / f"{site}.log")

    def _check_alive(self, tmp: Path) -> None:
        for proc in self.processes:
            if proc.poll() is not None:
                raise EngineError(f"`{' '.join(proc.args[:8])} ...` exited with {proc.returncode}; logs in {tmp}")

    def _connect(self) -> None:
        import dask
        from distributed import Client

        context = self.link.in_local_namespace() if self.link else _nothing()
        timeout = self.connect_timeout_s if self.external else START_TIMEOUT_S
        try:
            with context:  # the client's IO thread is started here, so it lives in the local namespace
                self.client = Client(self.address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise ClusterUnreachable(f"cannot reach the Dask scheduler at {self.address} within {timeout:g} s "
                              f"({type(err).__name__}); check the address and that it listens there") from None
        with suppress(TimeoutError):  # site_address names what is missing
            self.client.wait_for_workers(len(SITES), timeout=timeout)
        self.site_address()  # every site has a worker
        self._amm_was_running = bool(self.client.amm.running())
        self.client.amm.stop()
        self.client.get_task_stream(count=1)  # the first call installs the scheduler's task-stream plugin
        self.settings = {
            "compression (per worker)": self.client.run(dask.config.get, "distributed.comm.compression"),
            "work stealing": self.client.run_on_scheduler(dask.config.get, "distributed.scheduler.work-stealing"),
            "MALLOC_TRIM_THRESHOLD_ (per worker)": self.client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_"),
            "active memory manager": f"paused for the run (was {'on' if self._amm_was_running else 'off'})",
        }

    def close(self) -> None:
        """Stop the client and every process this cluster started (each by its own process group)."""
        with signals_held():
            self._close()

    def _close(self) -> None:
        if self.client is not None:
            with suppress(Exception):  # a dead cluster must not hide the original error
                if self._amm_was_running:
                    self.client.amm.start()
            with suppress(Exception):
                self.client.close(timeout=5)
            self.client = None
        for proc in self.processes:
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.processes:
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with suppress(ProcessLookupError):  # the group: a nanny's worker too
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self.processes = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        if self._signals is not None:
            self._signals.__exit__(None, None, None)
            self._signals = None

    # ---- work ----

    def submit(self, func, input_, *, at: str, key: str, **kwargs):
        """``func(input_, **kwargs)`` on the worker of site ``at``, shipped as ``portable`` glue."""
        reduce, call, stage, loads = portable(func, **kwargs)
        return self.client.submit(reduce, call, [stage, input_], loads, key=key, resources={at: 1}, pure=False)

    def load_models(self, plugin) -> dict[str, dict]:
        """Register the model plugin (every worker, and every replacement, loads its site's model) and return
        each site's cold start."""
        from repro.placement.stages import cold_start

        self.client.register_plugin(plugin)
        starts = self.client.run(cold_start)
        return {record["site"]: record for record in starts.values() if record}

    def scheduler_time(self) -> float:
        return float(self.client.run_on_scheduler(time.time))

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
            raise ClusterUnreachable(
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

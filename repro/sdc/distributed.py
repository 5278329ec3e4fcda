"""Sweeps on Dask (seed 003's "distributed experiments"): every chunk of faults is a task; each worker loads
its model once (a ``WorkerPlugin`` that builds a ``FaultRunner`` on the worker's first task and keeps it);
the client writes each chunk's results into the resumable results log as it arrives, so a killed worker
loses no result that was written, and its unfinished chunk is rerun elsewhere by the scheduler (its
results are identical, and the log never writes a configuration twice).

``connect(address)`` uses a running cluster (``dask scheduler`` and ``dask worker tcp://host:8786`` on any
machines that hold the suite, the model files and ``$REPRO_DATA_DIR``); ``local_cluster(n)`` starts
``n`` worker processes on this machine (one thread of torch each) and stops them on exit, error, Ctrl-C or
SIGTERM. As in claim 6's engine (``repro.placement.engine``, whose worker environment and signal handling
this reuses), the scheduler's Active Memory Manager is stopped: it drops "superfluous" replicas behind the
client's back, and the lesson there was a lost copy that nothing could recompute.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import dask
from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker
from tqdm import tqdm

from repro.cli import UserError, stop_on_signals
from repro.placement.engine import WORKER_DASK_CONFIG, process_env
from repro.placement.teardown import signals_held
from repro.sdc.runner import FaultRunner, RunSpec
from repro.sdc.sweeps import ExperimentConfig, ResultsLog, pending, record

CONNECT_TIMEOUT_S = 10  # an unreachable scheduler: one line and exit 2 well within 15 s
PLUGIN = "repro-sdc-sweep"


class SweepPlugin(WorkerPlugin):
    """A Dask ``WorkerPlugin``: the worker's ``FaultRunner`` for ``spec``, made once (on the first task, in
    the task's thread, so a slow model load never blocks the worker's event loop) and kept."""

    name = PLUGIN

    def __init__(self, spec: RunSpec, token: str | None = None):
        self.spec = spec
        self.token = token or spec_digest(spec)  # made by the client, so a worker need not re-pickle the spec
        self._runner: FaultRunner | None = None
        self._lock = threading.Lock()

    def setup(self, worker) -> None:  # WorkerPlugin protocol
        pass

    def teardown(self, worker) -> None:
        self._runner = None

    def runner(self) -> FaultRunner:
        with self._lock:
            if self._runner is None:
                self._runner = FaultRunner(self.spec)
            return self._runner

    def __getstate__(self):
        return {"spec": self.spec, "token": self.token}

    def __setstate__(self, state):
        self.__init__(state["spec"], state["token"])


def run_chunk(chunk: list[ExperimentConfig]) -> list[dict]:
    """The task: a chunk's results, on whichever worker runs it."""
    return get_worker().plugins[PLUGIN].runner().run(chunk)


def spec_digest(spec: RunSpec) -> str:
    """What a spec is, as bytes (its loader and windows have no ``==`` of their own)."""
    return hashlib.sha256(pickle.dumps(spec)).hexdigest()


def _plugin_token(dask_worker=None) -> str | None:
    """On a worker (``client.run``): the token of the spec its sweep plugin was registered for, if any."""
    return getattr(dask_worker.plugins.get(PLUGIN), "token", None)


def load_runner(dask_worker=None) -> str:
    """On a worker (``client.run``): make the sweep plugin's runner now (a benchmark's warm-up), not on the
    first task."""
    return dask_worker.plugins[PLUGIN].runner().spec.model


def _key(chunk: list[ExperimentConfig]) -> str:
    return f"sdc-{chunk[0].id}-n{len(chunk)}"


def run_sweep_dask(client, spec: RunSpec, configs: list[ExperimentConfig], log: ResultsLog, *, batch_size: int,
                   progress: bool = True) -> list[dict]:
    """Every chunk the log lacks as a Dask task; results go into the log as they arrive. Workers that already
    hold this spec's runner keep it (registering again would make each load its model again)."""
    held = client.run(_plugin_token).values()
    if not held or any(token != spec_digest(spec) for token in held):
        client.register_plugin(SweepPlugin(spec), name=PLUGIN)
    with suppress(Exception):  # a scheduler without the AMM extension has nothing to stop
        client.amm.stop()
    todo = pending(configs, log, batch_size)
    futures = {client.submit(run_chunk, chunk, key=_key(chunk), pure=False): chunk for chunk in todo}
    with tqdm(total=len(configs), initial=len(configs) - sum(map(len, todo)), desc="sdc sweep (dask)",
              unit="fault", disable=not progress) as bar:
        try:
            for future in as_completed(futures, loop=client.loop):
                chunk = futures[future]
                record(log, chunk, future.result())
                future.release()
                bar.update(len(chunk))
        except BaseException:
            with suppress(Exception):
                client.cancel(list(futures))
            raise
    return log.read(configs)


class SchedulerUnreachable(UserError):
    """The --scheduler address did not answer in time, or has no workers (one line, exit 2)."""


@contextmanager
def connect(address: str, *, timeout: float = CONNECT_TIMEOUT_S) -> Iterator:
    """A client of the running cluster at ``address``; SchedulerUnreachable within ``timeout`` seconds."""
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise SchedulerUnreachable(f"no Dask scheduler answered at {address} within {timeout:.0f} s "
                                   f"({type(err).__name__}); start one with `dask scheduler` or drop --scheduler "
                                   "to use a local cluster") from None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise SchedulerUnreachable(f"the Dask scheduler at {address} has no workers; start one with "
                                       f"`dask worker {address}`") from None
        yield client
    finally:
        with signals_held(), suppress(Exception):
            client.close(timeout=10)


@contextmanager
def local_cluster(workers: int, *, threads: int = 1) -> Iterator:
    """A client of ``workers`` local worker processes (each with a nanny that restarts it if it dies)."""
    with stop_on_signals():
        with dask.config.set(WORKER_DASK_CONFIG):  # read by the nannies as they start
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                   memory_limit=0, silence_logs=logging.ERROR, env=process_env(threads))
        try:
            client = Client(cluster, set_as_default=False)
            try:
                yield client
            finally:
                with signals_held(), suppress(Exception):
                    client.close(timeout=10)
        finally:
            with signals_held(), suppress(Exception):
                cluster.close(timeout=20)

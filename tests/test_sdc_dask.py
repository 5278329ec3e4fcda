"""Claim 4's sweep on Dask: a worker killed mid-sweep loses nothing and duplicates nothing; an unreachable
scheduler is one line and exit 2. (The cluster machinery is claim 6's, ``repro.placement.engine``.)"""

import os
import signal
import threading
import time
from pathlib import Path

from test_sdc import TOY_SWEEP, _toy_sweep, toy_spec

from repro.sdc.sweeps import ResultsLog
from repro.snapshots import mismatches

TESTS = str(Path(__file__).parent)


def _kill_a_busy_worker(client, log: ResultsLog, killed: list):
    """Once the sweep is under way (an entry written), SIGKILL a worker that is running a chunk; its nanny
    starts a new one."""
    def watch():
        for _ in range(2400):
            if len(log):
                for addr, keys in client.processing().items():
                    if keys:
                        pid = client.run(os.getpid, workers=[addr])[addr]
                        os.kill(pid, signal.SIGKILL)
                        killed.append((addr, len(log)))
                        return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_killed_worker_loses_no_fault_and_duplicates_none(tmp_path, monkeypatch):
    from repro.sdc.distributed import _key, local_cluster, run_sweep_dask
    from repro.sdc.runner import FaultRunner

    # The workers unpickle the toy model's loader from this folder's modules.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (TESTS, os.environ.get("PYTHONPATH", "")) if p))
    spec = toy_spec()
    configs = TOY_SWEEP.configs(FaultRunner(spec).lm.adapter.n_layers)
    log = ResultsLog(tmp_path / "log", spec.log_settings())
    killed: list = []
    with local_cluster(2) as client:
        watcher = _kill_a_busy_worker(client, log, killed)
        results = run_sweep_dask(client, spec, configs, log, batch_size=1, progress=False)
        watcher.join(timeout=60)
        assert not client.amm.running()  # replicas stay where the client put them (claim 6's lesson)
        keys = [_key([c]) for c in configs]
        starts = client.run_on_scheduler(_sent_to_workers, keys=keys)
        pids = list(client.run(os.getpid).values())  # (the nannies live in this process)
        trim = set(client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values())  # glibc's default allocator
    assert killed and killed[0][1] < len(configs), killed  # killed mid-sweep
    assert len(starts) > len(set(starts)) == len(configs)  # the killed worker's chunk was sent again
    entries = sorted(p.stem for p in (tmp_path / "log").glob("*-*.json"))
    assert entries == sorted(c.id for c in configs)  # none missing, none twice
    straight, _ = _toy_sweep(tmp_path / "straight")  # the same faults in this process
    # The same science to float noise: a worker's allocations are aligned differently from this process's,
    # which can change the order of a vectorised sum in the last bits. Each detector's decisions must agree
    # exactly; its "use" of a checksum tolerance is a ratio of rounding errors, so it is left out.
    assert not mismatches([_science(r) for r in results], [_science(r) for r in straight], rel=1e-5, abs=1e-6)
    assert pids and _all_gone(pids)  # the worker processes are stopped
    assert trim == {None}


def test_a_second_sweep_on_the_same_workers_keeps_their_loaded_model(tmp_path, monkeypatch):
    from repro.sdc.distributed import local_cluster, run_sweep_dask
    from repro.sdc.runner import FaultRunner

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (TESTS, os.environ.get("PYTHONPATH", "")) if p))
    spec = toy_spec()
    configs = TOY_SWEEP.configs(FaultRunner(spec).lm.adapter.n_layers)
    with local_cluster(1) as client:
        run_sweep_dask(client, spec, configs[:2], ResultsLog(tmp_path / "a", spec.log_settings()), batch_size=1,
                       progress=False)
        first = client.run(_runner_id)
        run_sweep_dask(client, spec, configs[2:4], ResultsLog(tmp_path / "b", spec.log_settings()), batch_size=1,
                       progress=False)
        assert client.run(_runner_id) == first


def _runner_id(dask_worker=None) -> int:
    from repro.sdc.distributed import PLUGIN

    return id(dask_worker.plugins[PLUGIN]._runner)


def _all_gone(pids, wait_s=20.0) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return True
        time.sleep(0.2)
    return False


def _sent_to_workers(keys, dask_scheduler=None) -> list[str]:
    """On the scheduler: each time one of ``keys`` went to a worker (its own transition log)."""
    return [key for key, _start, finish, *_ in dask_scheduler.story(*keys) if finish == "processing" and key in keys]


def _science(result: dict) -> dict:
    detectors = ("bounds", "checksum")
    science = {k: v for k, v in result.items() if k != "id" and k not in detectors}
    return science | {d: {k: v for k, v in result[d].items() if k != "use"} for d in detectors if d in result}


def test_an_unreachable_scheduler_is_one_line_and_exit_2_within_15_s(tmp_path, capsys):
    import socket

    from repro.sdc.cli import main

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    code = main(["--sweep", "smoke", "--scheduler", f"tcp://127.0.0.1:{port}", "--connect-timeout", "3",
                 "--out", str(tmp_path / "out")])
    assert code == 2 and time.monotonic() - start < 15
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no Dask scheduler answered" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()

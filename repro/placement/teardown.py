"""Teardown you can trust: signals turned into an orderly unwind, children that die with their parent, and a
search for anything a run left behind.

- ``repro.cli.stop_on_signals()`` is entered before anything is created (namespaces, cgroups, processes):
  SIGTERM and SIGHUP then raise ``repro.cli.Stopped`` (a KeyboardInterrupt) in the main thread like Ctrl-C, so
  every ``finally`` and ``__exit__`` on the way out runs. ``signals_held()`` defers those signals while a
  teardown runs, so a second one cannot cut it short.
- ``child_setup(join, netns)`` is the ``preexec_fn`` of every process a run spawns: it asks the kernel to
  SIGKILL the child when its parent dies (``prctl(PR_SET_PDEATHSIG)``, kept across exec), moves it into its
  cgroups and its site's network namespace before it runs a line of its own, so whatever it starts inherits
  all three.
- Every spawned process carries ``OWNER_ENV=<pid of the run>`` in its environment; ``owned_processes`` finds
  them through ``/proc``, and ``processes_in_netns`` finds any process still inside a network namespace, by
  the namespace's inode (after ``ip netns delete`` a namespace with a process inside lives on, unnamed).
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

OWNER_ENV = "REPRO_PLACEMENT_OWNER"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1
CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here, not in the child between fork and exec


@contextmanager
def signals_held() -> Iterator[None]:
    """Defer Ctrl-C, SIGTERM and SIGHUP while tearing down; the first one is re-raised afterwards. (Handlers,
    not a signal mask: the mask is per thread, and the kernel may hand the signal to the Dask client's IO
    thread, whose Python handler then runs in the main thread.)"""
    received: list[int] = []

    def note(signum, frame):
        received.append(signum)

    try:
        previous = {s: signal.signal(s, note) for s in (signal.SIGINT, *STOP_SIGNALS)}
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


def child_setup(join: Iterable[str | Path] = (), netns: str | None = None):
    """A ``preexec_fn``: die with the parent (SIGKILL: a Dask worker's own SIGTERM handler waits for a
    scheduler that may be gone), join the cgroups whose ``cgroup.procs`` files are ``join``, and enter the
    network namespace ``netns`` (``/run/netns/<name>``). Only the network namespace: ``ip netns exec`` would
    also remount ``/sys``, hiding the cgroup files the workstation's stages set their quota in. The kernel
    sends the signal when the *thread* that forked exits, so spawn from a thread that lives as long as the run
    (the main thread, here)."""
    files = [os.fsencode(str(f)) for f in join]
    target = os.fsencode(f"/run/netns/{netns}") if netns else None
    parent = os.getpid()

    def setup() -> None:  # between fork and exec: no imports, no locks, only system calls
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: do not outlive it
            os._exit(1)
        pid = str(os.getpid()).encode()
        for path in files:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        if target is not None:
            fd = os.open(target, os.O_RDONLY)
            try:
                if _LIBC.setns(fd, CLONE_NEWNET):
                    os._exit(3)
            finally:
                os.close(fd)

    return setup


def owner_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` marked as this run's, so a leftover process can be found by its environment."""
    return {**env, OWNER_ENV: str(os.getpid())}


def _pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def owned_processes(owner: int | None = None) -> list[int]:
    """Live processes whose environment names ``owner`` (default: this process) as their run."""
    marker = f"{OWNER_ENV}={os.getpid() if owner is None else owner}".encode()
    found = []
    for pid in _pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone, or not ours to read
            continue
        if state != "Z" and marker in environ.split(b"\0"):
            found.append(pid)
    return found


def netns_inode(path: str | Path) -> int:
    return os.stat(path).st_ino


def processes_in_netns(inodes: Iterable[int]) -> list[int]:
    """Live processes inside any of the network namespaces with these inodes (named or not)."""
    wanted = set(inodes)
    found = []
    for pid in _pids():
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino in wanted:
                found.append(pid)
        except OSError:
            continue
    return found

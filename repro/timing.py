"""Measuring time: stage timers for pipelines, thread control and synchronisation for micro-timings.

Timings go into results and benchmark tables, never into snapshots (they differ on every run).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch


class StageTimer:
    """Wall-clock seconds per named stage, summed over repeated entries:

    ``timer = StageTimer(); with timer.stage("filter"): ...; timer.seconds -> {"filter": 0.8}``
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._started = time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def call(self, name: str, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` timed as stage ``name``."""
        with self.stage(name):
            return fn(*args, **kwargs)

    def total(self) -> float:
        """Seconds since the timer was made."""
        return time.perf_counter() - self._started


@dataclass(frozen=True)
class Timings:
    """Seconds of each timed call, and the last call's output. Quote the median: this machine is noisy."""

    seconds: list[float]
    output: Any = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def min(self) -> float:
        return min(self.seconds)


def time_calls(fn: Callable[[], Any], repeats: int, *, warmup: int = 0,
               sync: Callable[[], None] | None = None) -> Timings:
    """``repeats`` timed calls of ``fn`` after ``warmup`` untimed ones. ``sync`` (``synchronizer(device)``)
    runs before each clock read, so asynchronous GPU work is counted in the call that launched it."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    seconds, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        sync()
        seconds.append(time.perf_counter() - start)
    return Timings(seconds, out)


def synchronizer(device: torch.device | str) -> Callable[[], None]:
    """What to call before reading the clock: CUDA kernels run asynchronously, CPU ops do not."""
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


@contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Run with ``n`` intra-op threads (None: unchanged), restoring the previous count afterwards."""
    previous = torch.get_num_threads()
    if n is not None and n < 1:
        raise ValueError(f"thread count {n} is invalid; use a positive integer (this machine reports {previous}).")
    torch.set_num_threads(n or previous)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


@contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage-collector pauses inside timed loops (as ``timeit`` does)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()

"""Measuring memory: peak growth of the process's resident set during a block of work (for benchmarks).

RSS counts what the process really holds (tensors, caches, allocator slack), which is what a researcher's
machine runs out of; sampling from a thread catches peaks that end before the block does.
"""

from __future__ import annotations

import os
import threading


class RSSPeak:
    """Peak resident-set growth during a ``with`` block, sampled by a thread (see the module docstring)."""

    def __init__(self, interval_s: float = 0.005):
        self.interval_s, self.page = interval_s, os.sysconf("SC_PAGE_SIZE")
        self.peak = self.start = 0

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 2**20

"""repro.timing.time_calls: the one timing loop every benchmark uses."""

from __future__ import annotations

from repro.timing import time_calls


def test_warmup_calls_are_not_timed_and_sync_runs_before_each_clock_read():
    calls, syncs = [], []
    timings = time_calls(lambda: calls.append(len(calls)) or len(calls), 3, warmup=2, sync=lambda: syncs.append(len(calls)))
    assert len(calls) == 5 and len(timings.seconds) == 3
    assert syncs == [2, 3, 4, 5]  # once after the warm-up, then after every timed call
    assert timings.output == 5  # the last call's output
    assert timings.min <= timings.median and all(s >= 0 for s in timings.seconds)


def test_median_of_known_durations(monkeypatch):
    clock = iter([0.0, 1.0, 10.0, 13.0, 20.0, 22.0])  # calls of 1 s, 3 s, 2 s
    monkeypatch.setattr("repro.timing.time.perf_counter", lambda: next(clock))
    timings = time_calls(lambda: None, 3)
    assert timings.seconds == [1.0, 3.0, 2.0] and timings.median == 2.0 and timings.min == 1.0

"""Wall-clock timing of Bottom and Top, interleaved pair by pair, with component times inside each call.

Each timed call stamps the clock at every component boundary, so a call's component times add up to its
total exactly; seed 002's breakdown (9.01 + 23.32 + 2.78 ms against a 3.62 ms total) timed first calls
separately and did not. Bottom and Top alternate within each pair (and which goes first alternates
between pairs), so slow drifts of the machine (frequency, other load) hit both parts alike and cancel in
the per-pair ratio Top/Bottom.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from repro.split.parts import Part
from repro.timing import gc_paused, synchronizer, torch_threads


def timed_call(
    part: Part, x: torch.Tensor, kwargs: dict, sync: Callable[[], None]
) -> tuple[torch.Tensor, np.ndarray]:
    """(output, nanoseconds per component) of one call; the component times sum to the call's total by construction."""
    stamps = np.empty(len(part.components) + 1, dtype=np.int64)
    sync()
    stamps[0] = time.perf_counter_ns()
    for i, component in enumerate(part.components, start=1):
        x = component.forward(x, kwargs)
        sync()
        stamps[i] = time.perf_counter_ns()
    return x, np.diff(stamps)


def iqr(values) -> tuple[float, float]:
    q25, q75 = np.percentile(np.asarray(values, dtype=float), [25, 75])
    return float(q25), float(q75)


MAX_PAIRS = 10_000  # a few minutes of headline timing on 2 cores; more is a typo, not a plan


@dataclass(frozen=True)
class PartTimes:
    """Component times of repeated calls of one part: ``ns[call, component]``."""

    names: tuple[str, ...]
    ns: np.ndarray  # [calls, components], int64 nanoseconds

    @property
    def totals_ms(self) -> np.ndarray:
        return self.ns.sum(axis=1) / 1e6

    @property
    def shares(self) -> np.ndarray:
        """Each component's fraction of its own call's total: [calls, components], rows sum to 1."""
        return self.ns / self.ns.sum(axis=1, keepdims=True)

    def median_ms(self) -> float:
        return float(np.median(self.totals_ms))

    def component_ms(self) -> dict[str, float]:
        """The median total split by each component's mean share of its call.

        Mean shares sum to 1, so these times add up to the median total exactly (per-component medians
        would not); the shares come from the same calls as the totals.
        """
        mean_shares = self.shares.mean(axis=0)
        return {name: self.median_ms() * float(s) for name, s in zip(self.names, mean_shares)}

    def share(self, name: str) -> dict[str, float]:
        """Distribution over calls of one component's share of the call: mean, median and IQR."""
        if name not in self.names:
            raise KeyError(f"No component {name!r} in this part; it has {list(self.names)}.")
        column = self.shares[:, self.names.index(name)]
        q25, q75 = iqr(column)
        return {"mean": float(column.mean()), "median": float(np.median(column)), "q25": q25, "q75": q75}

    def component_median_ms(self, name: str) -> float:
        """Median over calls of one component's own time (for comparing one component across shapes)."""
        return float(np.median(self.ns[:, self.names.index(name)])) / 1e6


@dataclass(frozen=True)
class PairedTiming:
    """Interleaved Bottom/Top calls at one shape and thread count."""

    seq_len: int
    threads: int
    bottom: PartTimes
    top: PartTimes

    @property
    def ratios(self) -> np.ndarray:
        """Top/Bottom per pair: the two calls ran back to back, so each ratio sees the same machine state."""
        return self.top.totals_ms / self.bottom.totals_ms

    def summary(self) -> dict:
        q25, q75 = iqr(self.ratios)
        bq25, bq75 = iqr(self.bottom.totals_ms)
        tq25, tq75 = iqr(self.top.totals_ms)
        return {
            "seq_len": self.seq_len,
            "threads": self.threads,
            "pairs": len(self.ratios),
            "bottom_ms": self.bottom.median_ms(),
            "bottom_ms_iqr": [bq25, bq75],
            "top_ms": self.top.median_ms(),
            "top_ms_iqr": [tq25, tq75],
            "ratio": float(np.median(self.ratios)),
            "ratio_iqr": [q25, q75],
            # Fastest calls: least disturbed by other processes (timeit's advice), a check on the median
            # when the machine is shared; many small ops (Bottom) suffer more from a busy core than one
            # large matmul (Top's LM head), which biases the median ratio down under load.
            "bottom_min_ms": float(self.bottom.totals_ms.min()),
            "top_min_ms": float(self.top.totals_ms.min()),
            "ratio_of_mins": float(self.top.totals_ms.min() / self.bottom.totals_ms.min()),
        }


def time_pairs(
    bottom: Part,
    top: Part,
    ids: torch.Tensor,
    pairs: int,
    warmup: int,
    threads: int | None = None,
    progress: bool = False,
) -> PairedTiming:
    """Time ``pairs`` interleaved Bottom/Top calls on ``ids`` [batch, pos] after ``warmup`` calls of each.

    Top's input is Bottom's output (the hidden state it would receive in split learning). The causal mask
    is built once per shape, outside the timed calls (see ``Part.block_kwargs``).
    """
    if pairs < 1 or warmup < 0:
        raise ValueError(
            f"pairs={pairs}, warmup={warmup}: need pairs >= 1 and warmup >= 0 (see SplitSettings)."
        )
    sync = synchronizer(ids.device)
    with torch_threads(threads) as n_threads, torch.inference_mode():
        kwargs = bottom.block_kwargs(*ids.shape)
        hidden = bottom(ids, kwargs)
        for _ in range(warmup):  # first calls pay for allocation, kernel selection and cold caches
            bottom(ids, kwargs)
            top(hidden, kwargs)
        bottom_ns = np.empty((pairs, len(bottom.components)), dtype=np.int64)
        top_ns = np.empty((pairs, len(top.components)), dtype=np.int64)
        loop = tqdm(
            range(pairs),
            desc=f"split timing seq={ids.shape[1]} threads={n_threads}",
            leave=False,
            disable=not progress,
        )
        with gc_paused():
            for i in loop:
                if i % 2 == 0:
                    _, bottom_ns[i] = timed_call(bottom, ids, kwargs, sync)
                    _, top_ns[i] = timed_call(top, hidden, kwargs, sync)
                else:
                    _, top_ns[i] = timed_call(top, hidden, kwargs, sync)
                    _, bottom_ns[i] = timed_call(bottom, ids, kwargs, sync)
    return PairedTiming(
        ids.shape[1], n_threads, PartTimes(bottom.names, bottom_ns), PartTimes(top.names, top_ns)
    )

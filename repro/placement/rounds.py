"""The paired design: at each link rate, the link measured, one unrecorded warm-up per mode, then rounds.

A round runs Remote and Hybrid back to back, in ABBA order over rounds (R H, H R, H R, R H, ...), so a slow
spell on a shared machine lands on both modes of a round and drifts cancel over four rounds. ``local_rounds``
rounds, spread evenly, also run Local, first in one and last in the next (ABBA again, against Hybrid). The
unit of independence is the round: the statistic is each round's ``ln(W_X / W_Hybrid)`` (``verdict``).

The link model comes from a measured transfer between the two site workers, not from the tbf setting: a
small and a large blob (half a second at the stated rate) go from the local worker to the remote one; the
remote worker's transfer log gives each one's duration, whence the bytes per second and the fixed cost of a
transfer.
"""

from __future__ import annotations

import statistics
import uuid
from dataclasses import dataclass, field

from repro.placement.costmodel import LinkModel
from repro.placement.engine import Cluster
from repro.placement.pipeline import PipelineRun, run_pipeline
from repro.placement.placement import MODES, Placement
from repro.placement.stages import Pairs, Site

SMALL_BLOB = 1_000  # bytes
BLOB_SECONDS = 0.5  # the large blob's time at the stated rate
BLOB_MAX = 32_000_000
LINK_REPEATS = 3
GUESS_MBIT = 20.0  # sizes the large blob on a link of unknown rate (an existing cluster's)


def schedule(rounds: int, local_rounds: int) -> list[tuple[str, ...]]:
    """The modes of each round, in order: ABBA for Remote/Hybrid; Local joins ``local_rounds`` rounds spread
    evenly, first in the first of them, last in the next, and so on."""
    with_local = sorted({round(i * rounds / local_rounds) for i in range(local_rounds)})
    out = []
    for r in range(rounds):
        pair = ("remote", "hybrid") if r % 4 in (0, 3) else ("hybrid", "remote")
        if r in with_local:
            pair = ("local", *pair) if with_local.index(r) % 2 == 0 else (*pair, "local")
        out.append(pair)
    return out


@dataclass
class RateBlock:
    """Everything measured at one tbf rate."""

    rate_mbit: float  # as set on tbf (or the analytic model's, off a veth)
    link: LinkModel  # as measured between the site workers
    link_samples: list[dict]  # every blob transfer: bytes, seconds
    rounds: list[dict[str, PipelineRun]] = field(default_factory=list)  # mode -> its run, per round
    order: list[tuple[str, ...]] = field(default_factory=list)

    def runs(self, mode: str) -> list[PipelineRun]:
        return [r[mode] for r in self.rounds if mode in r]

    def all_runs(self) -> list[PipelineRun]:
        return [run for r in self.rounds for run in r.values()]

    def paired(self, mode: str, against: str = "hybrid") -> list[tuple[PipelineRun, PipelineRun]]:
        """(run of ``mode``, run of ``against``) for every round that ran both."""
        return [(r[mode], r[against]) for r in self.rounds if mode in r and against in r]

    @property
    def efficiency(self) -> float:
        """Measured bytes per second over tbf's stated rate."""
        return self.link.bytes_per_s / (self.rate_mbit * 1e6 / 8)


def measure_link(cluster: Cluster, rate_mbit: float, latency_s: float = 0.0) -> tuple[LinkModel, list[dict]]:
    """The link between the two site workers as measured now (see the module docstring)."""
    client = cluster.client
    large = int(min(BLOB_MAX, max(16_000, rate_mbit * 1e6 / 8 * BLOB_SECONDS)))
    local, remote = cluster.site_address("local"), cluster.site_address("remote")
    samples = []
    for _ in range(LINK_REPEATS):
        for size in (SMALL_BLOB, large):
            key = f"link-blob-{size}-{uuid.uuid4().hex[:8]}"
            blob = client.scatter({key: bytes(size)}, workers=[local], direct=False)[key]
            client.submit(len, blob, resources={"remote": 1}, pure=False).result()  # `len`: nothing of ours
            moved = client.run(transfer_durations, [key], workers=[remote])[remote]
            samples.append({"bytes": size, "seconds": moved[key]})
            blob.release()
    small = statistics.median(s["seconds"] for s in samples if s["bytes"] == SMALL_BLOB)
    big = statistics.median(s["seconds"] for s in samples if s["bytes"] == large)
    per_s = (large - SMALL_BLOB) / max(big - small, 1e-9)
    return LinkModel(per_s, latency_s, max(0.0, small - SMALL_BLOB / per_s)), samples


def transfer_durations(keys: list[str], dask_worker=None) -> dict[str, float]:
    """On a worker: how long each of ``keys`` took to arrive (Dask's incoming-transfer log)."""
    wanted = set(keys)
    return {str(k): float(e["duration"]) for e in dask_worker.transfer_incoming_log
            for k in e["keys"] if str(k) in wanted}


def run_rate(cluster: Cluster, rate_mbit: float | None, data: Pairs, sites: dict[str, Site], *, link, cgroups, rounds: int,
             local_rounds: int, latency_s: float = 0.0, site_lost_s: float = 60.0, progress=None) -> RateBlock:
    """The link set to ``rate_mbit`` (None: an existing cluster's link, as found) and measured, one warm-up per
    mode (not recorded), then the rounds."""
    block = _measured_block(cluster, link, rate_mbit, latency_s)
    block.order = schedule(rounds, local_rounds)

    def run(placement: Placement) -> PipelineRun:
        done = run_pipeline(cluster, placement, data, sites, link=link, cgroups=cgroups, site_lost_s=site_lost_s)
        if progress is not None:
            progress(f"{block.rate_mbit:g} Mbit/s {placement.name}")
        return done

    for mode in MODES:  # first calls, caches, the tbf bucket: nothing of this is recorded
        run(MODES[mode])
    for modes in block.order:
        block.rounds.append({mode: run(MODES[mode]) for mode in modes})
    return block


def run_placements(cluster: Cluster, placements: list[Placement], rate_mbit: float | None, data: Pairs,
                   sites: dict[str, Site], *, link, cgroups, latency_s: float = 0.0,
                   site_lost_s: float = 60.0) -> tuple[RateBlock, list[PipelineRun]]:
    """One run of each placement at ``rate_mbit``, the link measured first: the cost model's test points."""
    block = _measured_block(cluster, link, rate_mbit, latency_s)
    runs = [run_pipeline(cluster, p, data, sites, link=link, cgroups=cgroups, site_lost_s=site_lost_s)
            for p in placements]
    return block, runs


def _measured_block(cluster: Cluster, link, rate_mbit: float | None, latency_s: float) -> RateBlock:
    if link is not None and rate_mbit is not None:
        link.set_rate(rate_mbit)
    model, samples = measure_link(cluster, rate_mbit or GUESS_MBIT, latency_s)
    return RateBlock(rate_mbit if rate_mbit is not None else model.bytes_per_s * 8 / 1e6, model, samples)

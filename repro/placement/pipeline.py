"""One run of the pipeline under one placement on the cluster, timed by Dask's own instrumentation.

The stages are submitted as one chain of tasks, each with ``resources={site: 1}``; Dask moves each result to
the next stage's worker, and ``distributed.wait`` waits for the last one. Every time is on the scheduler's
clock: the start is read from the scheduler just before submission, and the task stream's compute and
transfer intervals are converted to its clock by the workers themselves. From the task stream and the
receiving workers' transfer logs, per stage:

- ``upload_s`` / ``download_s``: its inputs' transfers over the link towards the remote / the local site
  (a transfer belongs to the stage that receives it; the figure's trip to the workstation is Plot's);
- ``compute_s``: the task's compute interval;
- ``wall_s``: from the previous stage's end to this one's (Filter: from submission), so the stages' walls
  add up to the pipeline's; what is neither transfer nor compute is Dask's own overhead;
- ``bytes_moved``: Dask's size of what crossed the link into it; ``output_bytes``: its result's size.

Beside Dask's numbers a run records what the kernel saw: the veth's byte counters in each direction (every
byte: data, pickling headers, heartbeats, TCP), each site's load and steal during the run, and how often the
CFS quota throttled the workstation. If a site's worker dies mid-stage, the nanny restarts it and the
scheduler re-runs what was lost (``retried``); if no worker for the site returns within ``site_lost_s``, the
run stops with ``EngineError`` and nothing is returned.
"""

from __future__ import annotations

import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field

from repro.placement.engine import Cluster, EngineError
from repro.placement.placement import LOCAL, REMOTE, STAGES, Placement
from repro.placement.sites import machine_sample, machine_use
from repro.placement.stages import STAGE_FUNCTIONS, Effects, Pairs, Site

SOURCE = "pairs"  # the tokenized pairs, placed on the workstation before the clock starts
SINK = "deliver"  # the figure's arrival on the workstation, counted as part of Plot
WATCH_S = 1.0  # how often a wait looks up from the sink to check that every site still has a worker


@dataclass
class StageTiming:
    stage: str
    site: str
    upload_s: float = 0.0
    download_s: float = 0.0
    compute_s: float = 0.0
    wall_s: float = 0.0
    bytes_moved: int = 0
    output_bytes: int = 0
    transfers: list[dict] = field(default_factory=list)  # {"bytes", "seconds", "direction"}

    @property
    def overhead_s(self) -> float:
        return max(0.0, self.wall_s - self.compute_s - self.upload_s - self.download_s)


@dataclass
class PipelineRun:
    placement: Placement
    stages: dict[str, StageTiming]
    wall_s: float  # scheduler clock: submission to the figure's arrival on the workstation
    effects: Effects
    figure: bytes
    retried: bool = False  # a worker died and the lost work was re-run
    veth_bytes: dict[str, int] | None = None  # the kernel's count per direction during the run; None off a veth
    machine: dict[str, dict] = field(default_factory=dict)  # site -> load1, busy, steal during the run
    throttled: dict[str, int] | None = None  # the workstation's CFS counters during the run

    @property
    def upload_s(self) -> float:
        return sum(s.upload_s for s in self.stages.values())

    @property
    def download_s(self) -> float:
        return sum(s.download_s for s in self.stages.values())

    @property
    def network_s(self) -> float:
        return self.upload_s + self.download_s

    @property
    def compute_s(self) -> float:
        return sum(s.compute_s for s in self.stages.values())

    @property
    def bytes_moved(self) -> int:
        return sum(s.bytes_moved for s in self.stages.values())

    def dask_bytes(self) -> dict[str, int]:
        """Dask's estimate of the bytes over the link per direction (its ``sizeof`` of what moved)."""
        out = {"upload": 0, "download": 0}
        for s in self.stages.values():
            for t in s.transfers:
                out[t["direction"]] += t["bytes"]
        return out


def run_pipeline(cluster: Cluster, placement: Placement, pairs: Pairs, sites: dict[str, Site], *, link=None,
                 cgroups=None, site_lost_s: float = 60.0) -> PipelineRun:
    """Filter -> Collect -> Patch -> Plot -> Deliver under ``placement``; ``sites``: the Site of local and remote;
    ``link`` and ``cgroups`` (when the run made them) give the veth's counters and the CFS counters."""
    client = cluster.client
    run_id = uuid.uuid4().hex[:8]
    keys = {stage: f"{stage}-{placement.label}-{run_id}" for stage in (SOURCE, *STAGES, SINK)}
    # The pairs start on the workstation, like the seed's data.
    source = client.scatter({keys[SOURCE]: pairs}, workers=[cluster.site_address(LOCAL)], direct=False)[keys[SOURCE]]
    before = _observe(cluster, link, cgroups)
    start = cluster.scheduler_time()
    futures, previous = {}, source
    for stage in STAGES:
        site = placement.site(stage)
        futures[stage] = cluster.submit(STAGE_FUNCTIONS[stage], previous, at=site, key=keys[stage], site=sites[site])
        previous = futures[stage]
    futures[SINK] = client.submit(len, previous, key=keys[SINK], resources={LOCAL: 1}, pure=False)
    _wait(cluster, futures, placement, site_lost_s)
    after = _observe(cluster, link, cgroups)
    retried = _ran_twice(cluster, [k for s, k in keys.items() if s != SOURCE])
    effects, figure = client.gather([futures["patch"], futures["plot"]])
    stages, stop = _stage_timings(cluster, placement, keys, start)
    for f in (source, *futures.values()):
        f.release()
    run = PipelineRun(placement, stages, stop - start, effects, figure, retried)
    run.machine = {site: machine_use(before["machine"][site], after["machine"][site]) for site in after["machine"]}
    if before["veth"] is not None:
        run.veth_bytes = {d: after["veth"][d] - before["veth"][d] for d in before["veth"]}
    if before["throttled"] is not None:
        run.throttled = {k: after["throttled"][k] - before["throttled"][k] for k in before["throttled"]}
    return run


def _observe(cluster: Cluster, link, cgroups) -> dict:
    """What the machine says now: each site's load and CPU ticks, the veth's counters, the CFS counters."""
    by_address = cluster.client.run(machine_sample)
    sites = {addr: site for site, addr in cluster.site_address().items()}
    return {"machine": {sites[a]: s for a, s in by_address.items() if a in sites},
            "veth": link.counters() if link is not None else None,
            "throttled": cgroups.throttled_stats() if cgroups is not None else None}


def _ran_twice(cluster: Cluster, keys: list[str]) -> bool:
    """Was any of ``keys`` sent to a worker more than once (its worker died under it, or a result it needed
    was lost with one)? From the scheduler's own transition log (a built-in call: nothing of ours runs there)."""
    story = cluster.client.sync(cluster.client.scheduler.get_story, keys_or_stimuli=keys)
    starts = [row[0] for row in story if row[2] == "processing" and row[0] in keys]
    return len(starts) > len(set(starts))


def _wait(cluster: Cluster, futures: dict, placement: Placement, site_lost_s: float) -> None:
    """Wait for the sink with ``distributed.wait``, looking up every ``WATCH_S`` to check that every site has a
    worker. A site gone for ``site_lost_s``, or a task that failed or was cancelled, stops the run."""
    from distributed import TimeoutError as DaskTimeout
    from distributed import wait

    client, sink, lost_since = cluster.client, futures[SINK], None
    while True:
        with client.as_current(), suppress(DaskTimeout, TimeoutError):
            wait([sink], timeout=WATCH_S)
        for stage, f in futures.items():
            if f.status == "error":
                _cancel(cluster, futures)
                raise EngineError(f"stage {stage!r} on the {_site_of(stage, placement)} site failed: "
                                  f"{f.exception()!r} (worker logs have the traceback); no timing was written for placement {placement.label}")
            if f.status == "cancelled":  # the scheduler gave up on it, e.g. an input lost with every copy
                _cancel(cluster, futures)
                raise EngineError(f"the scheduler cancelled stage {stage!r} of placement {placement.label}; "
                                  "no timing was written")
        if sink.status == "finished":
            return
        missing = cluster.missing_sites()
        if not missing:
            lost_since = None
            continue
        lost_since = lost_since or time.monotonic()  # a timeout, not a measurement: the local clock is right
        if time.monotonic() - lost_since > site_lost_s:
            running = next((s for s, f in futures.items() if f.status != "finished"), SINK)
            _cancel(cluster, futures)
            raise EngineError(
                f"the {missing[0]} worker died during stage {running!r} of placement {placement.label} and no "
                f"replacement joined within {site_lost_s:.0f} s; the run was stopped and no timing was written "
                f"(restart the {missing[0]} worker, or run with its nanny, and try again)"
            )


def _cancel(cluster: Cluster, futures: dict) -> None:
    with suppress(Exception):  # already gone with its worker
        cluster.client.cancel(list(futures.values()))


def _site_of(stage: str, placement: Placement) -> str:
    return LOCAL if stage == SINK else placement.site(stage)


def _stage_timings(cluster: Cluster, placement: Placement, keys: dict, start: float) -> tuple[dict, float]:
    """Per-stage timings from the task stream and transfer logs, and the sink's end (scheduler clock)."""
    client = cluster.client
    stage_of_key = {key: stage for stage, key in keys.items() if stage != SOURCE}
    records = {}
    for _ in range(50):  # the scheduler's task stream can lag the client by a moment
        records = {r["key"]: r for r in client.get_task_stream(start=start - 1) if r["key"] in stage_of_key}
        if len(records) == len(stage_of_key):
            break
        time.sleep(0.05)
    if len(records) != len(stage_of_key):
        raise EngineError(f"the task stream lacks {sorted(set(stage_of_key) - set(records))}")
    sites = {addr: site for site, addr in cluster.site_address().items()}
    bytes_of = {}  # key of the data moved -> bytes, from the receiving worker's transfer log
    for entries in client.run(_transfer_log, list(keys.values())).values():
        for entry in entries:
            bytes_of.update(entry)

    timings, previous_stop = {s: StageTiming(s, placement.site(s)) for s in STAGES}, start
    for stage in (*STAGES, SINK):
        record = records[keys[stage]]
        timing = timings["plot" if stage == SINK else stage]
        where = sites.get(record["worker"])
        if where != _site_of(stage, placement):
            raise EngineError(f"stage {stage!r} ran on {record['worker']} ({where}), not on its site "
                              f"{_site_of(stage, placement)}")
        for ss in record["startstops"]:
            seconds = ss["stop"] - ss["start"]
            if ss["action"] == "compute":
                if stage != SINK:
                    timing.compute_s += seconds
                stop = ss["stop"]
            elif ss["action"] == "transfer" and sites.get(ss["source"]) != where:
                moved = _input_bytes(stage, keys, bytes_of)
                direction = "upload" if where == REMOTE else "download"
                setattr(timing, f"{direction}_s", getattr(timing, f"{direction}_s") + seconds)
                timing.bytes_moved += moved
                timing.transfers.append({"bytes": moved, "seconds": seconds, "direction": direction})
        if stage != SINK:
            timing.output_bytes = int(record.get("nbytes", 0))
        timing.wall_s += stop - previous_stop
        previous_stop = stop
    return timings, previous_stop


def _input_bytes(stage: str, keys: dict, bytes_of: dict) -> int:
    order = [SOURCE, *STAGES, SINK]
    return int(bytes_of.get(keys[order[order.index(stage) - 1]], 0))


def _transfer_log(keys: list[str], dask_worker=None) -> list[dict]:
    """On a worker: the bytes of each of ``keys`` it received, from Dask's own incoming-transfer log."""
    wanted = set(keys)
    return [{str(k): int(v) for k, v in e["keys"].items() if str(k) in wanted}
            for e in dask_worker.transfer_incoming_log if wanted & {str(k) for k in e["keys"]}]

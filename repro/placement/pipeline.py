"""One run of the pipeline under one placement on the cluster, timed by Dask's own instrumentation.

The stages are submitted as one chain of tasks, each with ``resources={site: 1}``; Dask moves each result to
the next stage's worker. Afterwards the scheduler's task stream gives, per task, the worker it ran on, its
compute interval, the transfers of its inputs (with their source worker) and its result's size; the workers'
``transfer_incoming_log`` gives the bytes of each transfer. From these, per stage:

- ``upload_s`` / ``download_s``: its inputs' transfers over the link towards the remote / the local site
  (a transfer belongs to the stage that receives it; the figure's trip to the workstation is Plot's);
- ``compute_s``: the task's compute interval;
- ``wall_s``: from the previous stage's end to this one's (Filter: from submission), so the stages' walls
  add up to the pipeline's; what is neither transfer nor compute is Dask's own overhead;
- ``bytes_moved``: bytes that crossed the link into it; ``output_bytes``: its result's size.

If a site's worker dies mid-stage, the nanny restarts it and the scheduler re-runs what was lost there
(``retried`` is then True); if no worker for the site returns within ``site_lost_s``, the run stops with
``EngineError`` and nothing is returned.
"""

from __future__ import annotations

import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field

from repro.placement.engine import Cluster, EngineError
from repro.placement.placement import LOCAL, REMOTE, STAGES, Placement
from repro.placement.stages import STAGE_FUNCTIONS, Effects, Pairs, Site, deliver

SOURCE = "pairs"  # the tokenized pairs, placed on the workstation before the clock starts
SINK = "deliver"  # the figure's arrival on the workstation, counted as part of Plot


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
    wall_s: float  # client-side, submission to the figure's arrival on the workstation
    effects: Effects
    figure: bytes
    retried: bool = False  # a worker died and the lost work was re-run

    @property
    def upload_s(self) -> float:
        return sum(s.upload_s for s in self.stages.values())

    @property
    def download_s(self) -> float:
        return sum(s.download_s for s in self.stages.values())

    @property
    def compute_s(self) -> float:
        return sum(s.compute_s for s in self.stages.values())

    @property
    def bytes_moved(self) -> int:
        return sum(s.bytes_moved for s in self.stages.values())


def run_pipeline(cluster: Cluster, placement: Placement, pairs: Pairs, sites: dict[str, Site],
                 site_lost_s: float = 60.0) -> PipelineRun:
    """Filter -> Collect -> Patch -> Plot -> Deliver under ``placement``; ``sites``: the Site of local and remote."""
    client = cluster.client
    run_id = uuid.uuid4().hex[:8]
    keys = {stage: f"{stage}-{placement.label}-{run_id}" for stage in (SOURCE, *STAGES, SINK)}
    # The pairs start on the workstation, like the seed's data.
    source = client.scatter({keys[SOURCE]: pairs}, workers=[cluster.site_address(LOCAL)], direct=False)[keys[SOURCE]]
    keys.pop(SOURCE)
    start_clock, start = time.time(), time.perf_counter()
    futures, previous = {}, source
    for stage in STAGES:
        site = placement.site(stage)
        futures[stage] = client.submit(STAGE_FUNCTIONS[stage], previous, site=sites[site], key=keys[stage],
                                       resources={site: 1}, pure=False)
        previous = futures[stage]
    futures[SINK] = client.submit(deliver, previous, key=keys[SINK], resources={LOCAL: 1}, pure=False)
    _wait(cluster, futures, placement, site_lost_s)
    wall = time.perf_counter() - start
    retried = cluster.client.run_on_scheduler(_ran_twice, keys=list(keys.values()))
    effects, figure = client.gather([futures["patch"], futures["plot"]])
    stages = _stage_timings(cluster, placement, {**keys, SOURCE: source.key}, start_clock)
    for f in (source, *futures.values()):
        f.release()
    return PipelineRun(placement, stages, wall, effects, figure, retried)


def _ran_twice(keys: list[str], dask_scheduler=None) -> bool:
    """On the scheduler: was any of ``keys`` sent to a worker more than once (its worker died under it, or a
    result it needed was lost with one)? From the scheduler's own transition log, so it does not matter when
    the worker died or how fast its replacement came."""
    starts = [key for key, _start, finish, *_ in dask_scheduler.story(*keys) if finish == "processing" and key in keys]
    return len(starts) > len(set(starts))


def _wait(cluster: Cluster, futures: dict, placement: Placement, site_lost_s: float) -> None:
    """Wait for the sink. A site gone for ``site_lost_s``, or a task that failed or was cancelled, stops the
    run with a clear error."""
    sink, lost_since = futures[SINK], None
    while True:
        _wait_quietly(sink)
        for stage, f in futures.items():
            if f.status == "error":
                _cancel(cluster, futures)
                raise EngineError(f"stage {stage!r} on the {_site_of(stage, placement)} site failed: "
                                  f"{f.exception()!r} (worker logs have the traceback); no timing was written for placement {placement.label}")
            if f.status == "cancelled":  # the scheduler gave up on it, e.g. an input lost with every copy
                _cancel(cluster, futures)
                raise EngineError(f"the scheduler cancelled stage {stage!r} of placement {placement.label} "
                                  f"({_cancel_reason(f)}); no timing was written")
        if sink.status == "finished":
            return
        missing = cluster.missing_sites()
        if not missing:
            lost_since = None
            continue
        lost_since = lost_since or time.monotonic()
        if time.monotonic() - lost_since > site_lost_s:
            running = next((s for s, f in futures.items() if f.status != "finished"), SINK)
            _cancel(cluster, futures)
            raise EngineError(
                f"the {missing[0]} worker died during stage {running!r} of placement {placement.label} and no "
                f"replacement joined within {site_lost_s:.0f} s; the run was stopped and no timing was written "
                f"(restart the {missing[0]} worker, or run with its nanny, and try again)"
            )


def _wait_quietly(future) -> None:
    with suppress(Exception):  # a timeout, or the task's error: the caller looks at every future's status
        future.result(timeout=0.5)


def _cancel_reason(future) -> str:
    try:
        future.result(timeout=5)  # returns at once: it is cancelled
    except Exception as err:  # FutureCancelledError, whose text carries the scheduler's reason
        return str(err) or type(err).__name__
    return "no reason given"


def _cancel(cluster: Cluster, futures: dict) -> None:
    with suppress(Exception):  # already gone with its worker
        cluster.client.cancel(list(futures.values()))


def _site_of(stage: str, placement: Placement) -> str:
    return LOCAL if stage == SINK else placement.site(stage)


def _stage_timings(cluster: Cluster, placement: Placement, keys: dict, start_clock: float) -> dict[str, StageTiming]:
    client = cluster.client
    stage_of_key = {key: stage for stage, key in keys.items() if stage != SOURCE}
    records = {}
    for _ in range(50):  # the scheduler's task stream can lag the client by a moment
        records = {r["key"]: r for r in client.get_task_stream(start=start_clock - 1) if r["key"] in stage_of_key}
        if len(records) == len(stage_of_key):
            break
        time.sleep(0.05)
    if len(records) != len(stage_of_key):
        raise EngineError(f"the task stream lacks {sorted(set(stage_of_key) - set(records))}")
    sites = {addr: site for site, addr in cluster.site_address().items()}
    logs = client.run(_transfer_log, start_clock - 1)
    bytes_of = {}  # key of the data moved -> bytes, from the receiving worker's transfer log
    for entries in logs.values():
        for entry in entries:
            bytes_of.update(entry["keys"])

    timings, previous_stop = {}, start_clock
    for stage in STAGES:
        timings[stage] = StageTiming(stage, placement.site(stage))
    for stage in (*STAGES, SINK):
        record = records[keys[stage]]
        owner = "plot" if stage == SINK else stage
        timing = timings[owner]
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
    return timings


def _input_bytes(stage: str, keys: dict, bytes_of: dict) -> int:
    order = [SOURCE, *STAGES, SINK]
    return int(bytes_of.get(keys[order[order.index(stage) - 1]], 0))


def _transfer_log(start_clock: float, dask_worker=None) -> list[dict]:
    """On a worker: its incoming transfers since ``start_clock`` (Dask's own log)."""
    return [{"keys": {str(k): int(v) for k, v in e["keys"].items()}, "total": int(e["total"]),
             "duration": float(e["duration"]), "who": e["who"]}
            for e in dask_worker.transfer_incoming_log if e["start"] >= start_clock]

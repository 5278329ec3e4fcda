"""Benchmarks of claim 6's engine (rows for ``nox -s bench``):

- Dask's overhead per stage: an empty task on the remote site whose input waits on the local site, round
  trip from the client (submission to result), over the shaped link;
- transfer throughput of an activation cache (Collect's output for two pairs, ~20 MB) from the local to the
  remote worker, against the configured tbf rate (goal: >= 90% of it), from the remote worker's
  ``transfer_incoming_log``;
- the optimiser's median |prediction error| over the placements ``run_hybrid`` validated for real.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

from repro.assets import AssetError
from repro.ioi.dataset import generate_pairs, tokenize_pairs
from repro.models import load_model
from repro.placement.engine import Cluster, WorkerSpec
from repro.placement.link import LinkSpec, open_link
from repro.placement.stages import Pairs, Site, collect_stage, filter_stage, warm_up
from repro.profiles import Profile
from repro.timing import time_calls

MODEL = "smollm2-135m"
ROUND_TRIPS = 20
CACHE_TRANSFERS = 3
THROUGHPUT_GOAL = 0.9


def _noop(x):
    return x


def _size(x) -> int:
    return 1 if x is not None else 0


def run_benchmark(profile: Profile) -> list[dict]:
    settings = profile.hybrid
    try:
        lm = load_model(MODEL, "cpu", profile.dtype)
    except AssetError as err:
        return [{"benchmark": "hybrid", "status": f"NOT_RUN: {err}"}]
    pairs = generate_pairs(lm.tokenizer, 2, settings.pair_seed)
    data = Pairs(pairs, tokenize_pairs(lm.tokenizer, pairs))
    spec = LinkSpec(settings.rate_mbit)
    site = Site(MODEL, threads=settings.local_threads)
    rows = []
    with open_link(spec) as link, Cluster(link, WorkerSpec(settings.local_threads),
                                          WorkerSpec(settings.remote_threads)) as cluster:
        client = cluster.client
        for s in ("local", "remote"):
            client.submit(warm_up, site, resources={s: 1}, pure=False).result()

        def round_trip():
            tiny = client.submit(_noop, 0, resources={"local": 1}, pure=False)
            client.submit(_noop, tiny, resources={"remote": 1}, pure=False).result()

        trips = time_calls(round_trip, ROUND_TRIPS)
        rows.append({"benchmark": "Dask overhead per stage (empty task local -> remote, round trip)",
                     "link": link.kind, "median_ms": round(1e3 * trips.median, 2),
                     "min_ms": round(1e3 * trips.min, 2), "runs": ROUND_TRIPS})

        kept = client.submit(filter_stage, data, site, resources={"local": 1}, pure=False)
        rates = []
        for _ in range(CACHE_TRANSFERS):
            cache = client.submit(collect_stage, kept, site, resources={"local": 1}, pure=False)
            start_clock = time.time()
            client.submit(_size, cache, resources={"remote": 1}, pure=False).result()
            log = client.run(_last_transfer, start_clock, workers=[cluster.site_address("remote")])
            entry = next(iter(log.values()))
            rates.append((entry["total"], entry["duration"]))
            cache.release()
        throughput = statistics.median(b / d for b, d in rates)
        rows.append({"benchmark": "activation cache transfer throughput vs tbf rate", "link": link.kind,
                     "cache_mb": round(rates[0][0] / 1e6, 1), "rate_mbit": spec.rate_mbit,
                     "measured_mbit": round(throughput * 8 / 1e6, 2),
                     "fraction_of_rate": round(throughput / spec.bytes_per_s, 3),
                     "goal": f">= {THROUGHPUT_GOAL:.0%}", "met": throughput / spec.bytes_per_s >= THROUGHPUT_GOAL})

    from repro.placement.run import run_hybrid

    result = run_hybrid(lm, replace(settings, repeats=1), _scratch(), progress=True)
    errors = [abs(v["error"]) for v in result.validation]
    rows.append({"benchmark": "optimiser median |prediction error| (validated placements)",
                 "link": result.link_kind, "median_error": round(statistics.median(errors), 4),
                 "placements": ", ".join(v["placement"] for v in result.validation)})
    return rows


def _scratch():
    import tempfile

    return tempfile.mkdtemp(prefix="repro-hybrid-bench-")


def _last_transfer(start_clock: float, dask_worker=None) -> dict:
    entries = [e for e in dask_worker.transfer_incoming_log if e["start"] >= start_clock]
    biggest = max(entries, key=lambda e: e["total"])
    return {"total": int(biggest["total"]), "duration": float(biggest["duration"])}

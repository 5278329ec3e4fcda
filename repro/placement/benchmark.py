"""Benchmarks of claim 6's engine (rows for ``nox -s bench``):

- Dask's overhead per stage: an empty task on the remote site whose input waits on the local site, round
  trip from the client (submission to result), over the shaped link;
- transfer throughput of an activation cache (Collect's output for two pairs, ~18 MB) from the local to the
  remote worker, against the configured tbf rate (goal: >= 90% of it), from the remote worker's
  ``transfer_incoming_log``;
- the cost model's median |prediction error| on the placements that ship the activation cache, from a short
  ``run_hybrid`` (two rounds per rate).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace

from repro.assets import AssetError
from repro.cli import stop_on_signals
from repro.ioi.dataset import generate_pairs, tokenize_pairs
from repro.models import load_model
from repro.placement.engine import Cluster, WorkerSpec
from repro.placement.link import LinkSpec, open_link
from repro.placement.rounds import transfer_durations
from repro.placement.stages import ModelPlugin, Pairs, Site, collect_stage, filter_stage
from repro.profiles import Profile
from repro.timing import time_calls

MODEL = "smollm2-135m"
ROUND_TRIPS = 20
CACHE_TRANSFERS = 3
THROUGHPUT_GOAL = 0.9
RATE_MBIT = 20.0


def run_benchmark(profile: Profile) -> list[dict]:
    settings = profile.hybrid
    try:
        lm = load_model(MODEL, "cpu", profile.dtype)
    except AssetError as err:
        return [{"benchmark": "hybrid", "status": f"NOT_RUN: {err}"}]
    pairs = generate_pairs(lm.tokenizer, 2, settings.pair_seed)
    data = Pairs(pairs, tokenize_pairs(lm.tokenizer, pairs))
    spec = LinkSpec(RATE_MBIT)
    site = Site(MODEL, threads=settings.local_threads)
    rows = []
    with stop_on_signals(), open_link(spec) as link, Cluster(link, WorkerSpec(settings.local_threads),
                                                             WorkerSpec(settings.remote_threads)) as cluster:
        client = cluster.client
        cluster.load_models(ModelPlugin({"local": site, "remote": site}))

        def round_trip():  # builtins only: the scheduler needs nothing of the suite
            tiny = client.submit(int, 0, resources={"local": 1}, pure=False)
            client.submit(abs, tiny, resources={"remote": 1}, pure=False).result()

        trips = time_calls(round_trip, ROUND_TRIPS)
        rows.append({"benchmark": "Dask overhead per stage (empty task local -> remote, round trip)",
                     "link": link.kind, "median_ms": round(1e3 * trips.median, 2),
                     "min_ms": round(1e3 * trips.min, 2), "runs": ROUND_TRIPS})

        source = client.scatter(data, workers=[cluster.site_address("local")], direct=False)
        kept = cluster.submit(filter_stage, source, at="local", key=f"bench-filter-{time.time_ns()}", site=site)
        rates, remote = [], cluster.site_address("remote")
        for i in range(CACHE_TRANSFERS):
            key = f"bench-collect-{i}-{time.time_ns()}"
            cache = cluster.submit(collect_stage, kept, at="local", key=key, site=site)
            client.submit(id, cache, resources={"remote": 1}, pure=False).result()
            seconds = client.run(transfer_durations, [key], workers=[remote])[remote][key]
            nbytes = client.run(_incoming_bytes, key, workers=[remote])[remote]
            rates.append((nbytes, seconds))
            cache.release()
        throughput = statistics.median(b / d for b, d in rates)
        rows.append({"benchmark": "activation cache transfer throughput vs tbf rate", "link": link.kind,
                     "cache_mb": round(rates[0][0] / 1e6, 1), "rate_mbit": spec.rate_mbit,
                     "measured_mbit": round(throughput * 8 / 1e6, 2),
                     "fraction_of_rate": round(throughput / spec.bytes_per_s, 3),
                     "goal": f">= {THROUGHPUT_GOAL:.0%}", "met": throughput / spec.bytes_per_s >= THROUGHPUT_GOAL})

    from repro.placement.run import run_hybrid

    result = run_hybrid(lm, replace(settings, rounds=2, local_rounds=2), tempfile.mkdtemp(prefix="repro-hybrid-bench-"),
                        progress=True)
    errors = [abs(v["error"]) for v in result.validation if v["ships_cache"]]
    rows.append({"benchmark": "cost model median |prediction error| (placements that ship the cache)",
                 "link": result.link_kind, "median_error": round(statistics.median(errors), 4),
                 "placements": ", ".join(f"{v['placement']} @ {v['rate_mbit']:g} Mbit/s"
                                         for v in result.validation if v["ships_cache"])})
    return rows


def _incoming_bytes(key: str, dask_worker=None) -> int:
    """On a worker: the bytes of ``key`` it received (Dask's incoming-transfer log)."""
    return sum(int(n) for e in dask_worker.transfer_incoming_log for k, n in e["keys"].items() if str(k) == key)

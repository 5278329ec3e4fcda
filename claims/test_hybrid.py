"""Hybrid placement: the IOI pipeline is fastest with its compute-heavy modules remote and the rest local.

Claim as published:
    The IOI pipeline's four modules (Filter, Collect, Patch, Plot) run in three modes: Local (all on the
    workstation: i7 CPU, 16 GB, no GPU), Remote (all on a cloud GPU: a 3080 Ti), Hybrid (compute-heavy
    modules remote, the rest local). Mean seconds local / remote / hybrid: Filter 0.8 / 0.9 / 0.8; Collect
    2.1 / 0.7 / 0.7; Patch 3.2 / 1.1 / 1.1; Plot 0.6 / 0.8 / 0.6. Network I/O is Remote mode's main
    bottleneck (~20% of its time); Hybrid is best overall, ~40% less total time than Local; compute-heavy
    modules belong remote and I/O modules local.

In English:
    Splitting the pipeline, so that the expensive model work (caching activations, patching) runs on the
    fast remote machine while the cheap steps stay home, beats both running everything at home and
    running everything remotely, because it avoids most of the network traffic. (The table's own totals,
    6.7 / 3.5 / 3.2 s, make Hybrid 52% faster than Local, not 40%; the report checks this.)

Source:
    Seed report 000 (the IOI pipeline's placement study), as quoted in the claim-6 issue. Anchor:
    Neurosurgeon (Kang et al., ASPLOS 2017), which partitions DNN work between a mobile device and the
    cloud from measured per-layer costs and the link's bandwidth (3.1x lower latency on average).

Method:
    The four modules are the IOI claim's own code, run as Dask tasks on a scheduler and two workers,
    "local" and "remote"; each task goes to the worker of the site its placement names (a Dask resource),
    and the intermediates (pairs, activation caches, effects, figure bytes) move between workers the Dask
    way; each worker loads the model itself. The remote worker lives in its own network namespace, joined
    to the local one by a veth pair shaped with tc tbf (both ways) at the profile's rate; it has more
    threads (cpu) or CUDA (gpu). Upload, download, compute and wall time per module come from Dask's task
    stream and transfer logs. Scenario 1 measures Local, Remote and Hybrid, interleaved and repeated.
    Scenario 2 puts the seed's own per-module numbers through the cost model (compute per site + bytes /
    bandwidth), with the link fitted so that Remote spends 20% of its time on the network. The cost model,
    calibrated on scenario 1's runs, predicts all 16 placements; the best predictions are run for real.

Reproduced when:
    Per scenario, REPRODUCED when Hybrid has the lowest wall time beyond noise: at least 5% below the best
    other mode and outside the min-max of that mode's repeated runs (scenario 2, from means, has no spread);
    PARTIAL when it ties with the best within noise; NOT_REPRODUCED when another mode wins. The record's
    verdict is scenario 1's (measured here); scenario 2's is reported beside it and snapshotted.
"""

import pytest

from repro.placement import run_hybrid
from repro.placement.placement import MODES, STAGES
from repro.verdicts import Claim, Verdict

CLAIM = Claim.parse(__doc__, key="hybrid", number=6)

P, N = Verdict.PARTIAL, Verdict.NOT_REPRODUCED
EXPECTED = {  # model: {profile: declared verdict (scenario 1, measured)}
    # Measured (cpu, shared 2-core machine at load 3-14): medians local 53.6 s < hybrid 110.4 s < remote
    # 139.8 s, but the runs' min-max ranges overlap (local 25.6-102.3 s), so no mode wins beyond noise. The
    # 2-thread remote worker was slower than the 1-thread local one under that load (speed-up 0.2-0.5).
    # Hybrid moves only ~3.6 KB over the link against Remote's ~34 KB: the link cannot decide; compute does,
    # and Filter (a forward pass over every prompt) is compute too, so a faster remote site wins it as well.
    "smollm2-135m": {"cpu": P, "gpu": N},
}
SEED_SCENARIO = Verdict.REPRODUCED  # scenario 2: the seed's own numbers, through the cost model


@pytest.fixture(scope="module", params=list(EXPECTED))
def outcome(request, run_claim):
    return run_claim(CLAIM, request.param, EXPECTED,
                     lambda lm, profile, out: run_hybrid(lm, profile.hybrid, out, progress=False))


def test_numbers_match_snapshot(outcome, check_snapshot):
    check_snapshot(outcome, outcome.result.snapshot())


def test_verdict_is_the_declared_one(outcome):
    assert outcome.record.verdict == outcome.record.expected, outcome.record.summary()


def test_seed_scenario_verdict(outcome):
    assert outcome.result.seed.verdict == SEED_SCENARIO.value, outcome.result.seed.criteria()


def test_placement_does_not_change_the_science(outcome):
    # Every run, in every placement, patched the same pairs to the same effects (threads and sites differ,
    # so float noise is allowed, nothing more).
    result = outcome.result
    assert result.max_effect_diff < 1e-3 and result.max_logit_diff_diff < 1e-3
    assert result.n_kept >= 0.75 * result.n_pairs and result.clean_ld_mean > 1.0 > -1.0 > result.corrupted_ld_mean


def test_each_module_ran_where_placed_and_only_crossings_moved_bytes(outcome):
    result = outcome.result
    for mode, runs in result.runs.items():
        for run in runs:
            assert not run.retried
            for stage in STAGES:
                timing = run.stages[stage]
                assert timing.site == MODES[mode].site(stage)
                assert (timing.bytes_moved > 0) == bool(timing.upload_s + timing.download_s > 0)
            # the figure's PNG size may differ by a few bytes if float noise moves a pixel; the rest is exact
            assert run.bytes_moved == pytest.approx(result.moved_bytes()[mode], rel=0 if mode != "remote" else 0.01)
    assert result.moved_bytes()["local"] == 0


def test_the_optimiser_was_checked_against_real_runs(outcome):
    result = outcome.result
    assert len(result.ranking) == 2 ** len(STAGES) and result.validation
    # Placements that split Collect from Patch ship the activation cache over the link, and pay for it.
    cache_s = result.output_bytes["collect"] / result.link_model.bytes_per_s
    for p in result.ranking:
        if p.placement.site("collect") != p.placement.site("patch"):
            assert p.network_s >= cache_s > 0

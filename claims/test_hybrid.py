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
    intermediates move between workers the Dask way, and each worker loads the model in a WorkerPlugin
    (the cold start is its own row). The remote worker lives in its own network namespace, joined to the
    local one by a veth pair shaped with tc tbf (both ways). The sites differ as the seed's did: cgroups pin
    the remote worker to one core and the scheduler, client and local worker to the other, and a CFS quota
    slows the workstation 3x on Collect and Patch (the seed: 2.1/0.7 and 3.2/1.1 s; its Filter and Plot ran
    no faster remote). Workers keep glibc's default allocator: Dask's nanny would start them with
    MALLOC_TRIM_THRESHOLD_=65536, which re-faults every large tensor a task frees (Patch 50% slower and
    +-20% from run to run on a 1-core site: a cost of the engine's defaults, not of the placement). The
    link is a variable: at 0.4 Mbit/s (the seed's link: its own means put 20% of Remote's time on the
    network, which with this pipeline's bytes is ~0.4 Mbit/s) and 20 Mbit/s, the link is measured between
    the site workers, each mode runs once unrecorded, then 6 Remote/Hybrid rounds in ABBA order, 3 of them
    with Local. Times are the scheduler's (Dask's task stream); the veth's counters stand beside Dask's byte
    estimates. The cost model (compute per site + bytes / measured link), calibrated on these runs, predicts
    all 16 placements over rates x slowdowns (the map), and is checked on the 2 placements it predicts
    fastest among those that ship the 36 MB activation cache, run at 200 Mbit/s. The seed's own means, put
    through the cost model, are a consistency check (a re-computation), kept out of the verdict.

Reproduced when:
    Statistic: per round, ln(W_X / W_Hybrid) for X = Remote and Local (the round's runs back to back); unit:
    the round (n = 6 for Remote, 3 for Local); interval: 95% t over rounds; smallest effect of interest: 5%.
    At the seed's link (0.4 Mbit/s): REPRODUCED when the lower bound exceeds ln 1.05 for both X;
    NOT_REPRODUCED when the upper bound is below -ln 1.05 for some X (that mode is >= 5% faster);
    INCONCLUSIVE otherwise (a tie within 5% included). Gates (a failed one: INCONCLUSIVE): the link carries
    the traffic (measured throughput 0.5-1.1x the tbf rate, veth bytes >= Dask's estimate in every run); the
    sites differ by the stated factor (measured workstation/remote compute on Collect+Patch within 2-4x);
    every run did the same science (effects within 1e-3); no run lost a worker. The same headline at 20
    Mbit/s, and the side claims as parts with their own intervals and regions at each rate (Hybrid's saving
    over Local, 1 - W_H/W_L, inside 30-50%; the network's share of Remote's wall, t over Remote runs, inside
    10-30%), are reported beside the verdict and do not change it.
"""

import pytest

from repro.placement import run_hybrid
from repro.placement.placement import MODES, STAGES
from repro.verdicts import Claim, Verdict

CLAIM = Claim.parse(__doc__, key="hybrid", number=6)

R, N, INC = Verdict.REPRODUCED, Verdict.NOT_REPRODUCED, Verdict.INCONCLUSIVE
EXPECTED = {  # model: {profile: declared verdict (the headline at the seed's link, after the gates)}
    # Measured (cpu, this rule; shared 2-core Intel Xeon machine at load 6.6-9.4, before the allocator fix,
    # three consecutive runs, all gates passed, workstation/remote compute on Collect+Patch 3.20x, 3.29x,
    # 3.19x): at 0.4 Mbit/s ln(W_R/W_H) = 0.155 [0.137, 0.173], 0.176 [0.121, 0.230], 0.179 [0.168, 0.189]
    # (n = 6 rounds) and ln(W_L/W_H) = 0.996 [0.914, 1.078], 1.046 [1.003, 1.089], 1.019 [0.965, 1.073]
    # (n = 3): both lower bounds above ln 1.05 = 0.049 every time -> REPRODUCED x3. (At 20 Mbit/s Hybrid and
    # Remote tie: ln(W_R/W_H) -0.023 [-0.079, 0.032], 0.009 [-0.015, 0.033], -0.021 [-0.072, 0.030] ->
    # INCONCLUSIVE there, reported, not the verdict.)
    # On an AMD EPYC host (quiet, load ~1, after the allocator fix) four runs gave INCONCLUSIVE, INCONCLUSIVE,
    # REPRODUCED, INCONCLUSIVE: ln(W_R/W_H) = 0.100 [0.014, 0.186], 0.068 [-0.085, 0.222], 0.159 [0.089,
    # 0.228], 0.062 [-0.029, 0.152] (n = 6); ln(W_L/W_H) 0.996 [0.874, 1.117], 0.970 [0.827, 1.113], 1.174
    # [1.054, 1.293], 1.049 [0.947, 1.152] (n = 3).
    # Compute there is slower (network share of Remote 0.14-0.16, not 0.18) and noisier (+-20% per stage), so
    # the effect sits near ln 1.05 inside wider intervals: the test marks an undecided run xfail
    # (test_verdict_is_the_declared_one), it does not count it as reproduced.
    # gpu: not measured (no GPU lent yet); declared as the cpu design predicts, to be set by the first gpu run.
    "smollm2-135m": {"cpu": R, "gpu": R},
}


@pytest.fixture(scope="module", params=list(EXPECTED))
def outcome(request, run_claim):
    return run_claim(CLAIM, request.param, EXPECTED,
                     lambda lm, profile, out: run_hybrid(lm, profile.hybrid, out, progress=False))


def test_numbers_match_snapshot(outcome, check_snapshot):
    check_snapshot(outcome, outcome.result.snapshot())


def test_verdict_is_the_declared_one(outcome):
    record = outcome.record
    if record.verdict is INC and record.measurement.ruling.decided_by == "region" and record.expected is not INC:
        # A timing verdict on a host whose run-to-run noise (or slower compute, hence a smaller network share)
        # leaves the interval across ln 1.05: the rule says INCONCLUSIVE, never the opposite verdict. Shown as
        # an expected failure with its numbers, not as a pass; a failed gate or a contrary verdict still fails.
        pytest.xfail(f"this host could not decide: {record.summary()}")
    assert record.verdict == record.expected, record.summary()


def test_the_design_ran_as_declared(outcome):
    # Every measured rate has its paired rounds (ABBA over Remote/Hybrid, Local in some) and a measured link.
    result, settings = outcome.result, outcome.result.settings
    assert [b.rate_mbit for b in result.blocks] == list(settings.rates_mbit)
    for block in result.blocks:
        assert len(block.paired("remote")) == settings.rounds and len(block.paired("local")) == settings.local_rounds
        assert [o.index("remote") < o.index("hybrid") for o in block.order][:4] == [True, False, False, True]
        assert block.link.bytes_per_s > 0


def test_placement_does_not_change_the_science(outcome):
    # Every run, in every placement, patched the same pairs to the same effects (threads and sites differ,
    # so float noise is allowed, nothing more).
    result = outcome.result
    assert result.max_effect_diff < 1e-3 and result.max_logit_diff_diff < 1e-3
    assert result.n_kept >= 0.75 * result.n_pairs and result.clean_ld_mean > 1.0 > -1.0 > result.corrupted_ld_mean


def test_each_module_ran_where_placed_and_the_wire_saw_at_least_what_dask_moved(outcome):
    result = outcome.result
    for block in result.blocks:
        for run in block.all_runs():
            assert not run.retried
            for stage in STAGES:
                timing = run.stages[stage]
                assert timing.site == run.placement.site(stage)
                assert (timing.bytes_moved > 0) == bool(timing.upload_s + timing.download_s > 0)
            if run.veth_bytes is not None:
                assert all(run.veth_bytes[d] >= n for d, n in run.dask_bytes().items())
    assert result.moved_bytes()["local"] == 0


def test_the_cost_model_was_checked_on_placements_that_ship_the_cache(outcome):
    result = outcome.result
    shipped = [v for v in result.validation if v["ships_cache"]]
    assert len(shipped) == result.settings.validate and all(v["measured_s"] > 0 for v in shipped)
    cache = result.costs.output_bytes["collect"]
    for run in result.validation_runs:
        assert run.placement.site("collect") != run.placement.site("patch")
        assert run.bytes_moved >= cache > 0  # the activation cache crossed the link
    assert len(result.rankings[result.blocks[0].rate_mbit]) == 2 ** len(STAGES)


def test_the_map_covers_rates_and_slowdowns(outcome):
    grid = outcome.result.placement_map
    assert len(grid["best"]) == len(grid["slowdowns"]) and len(grid["best"][0]) == len(grid["rates"])
    # Below 1 Mbit/s the activation cache would take minutes to cross: no winner there ships it.
    for row in grid["best"]:
        for rate, label in zip(grid["rates"], row):
            if rate <= 1.0:
                assert label[1] == label[2], (rate, label)
    assert grid["best"][-1][0] != MODES["local"].label  # 8x slower at home: Local never wins

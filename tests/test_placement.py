"""Claim 6's building blocks: placements, the cost model and its map, the paired design and the rule, the
link's and the cgroups' setup and teardown (SIGTERM at each phase, the parent killed), a scheduler without
the suite, and a remote worker killed mid-stage."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from repro.placement import link as linkmod
from repro.placement.costmodel import LinkModel, StageCosts, crossings, predict, with_slowdown
from repro.placement.engine import portable
from repro.placement.optimiser import measured_slowdown, prediction_error, rank
from repro.placement.placement import (
    MODES,
    STAGES,
    PlacementError,
    all_placements,
    load_placement,
    parse_placement,
    resolve_placement,
)
from repro.placement.rounds import RateBlock, schedule
from repro.placement.scenarios import seed_check, seed_costs
from repro.placement.sites import can_pin, leftover_cgroups, machine_use
from repro.placement.sweep import hybrid_limits, placement_map
from repro.placement.teardown import owned_processes
from repro.placement.verdict import (
    SMALLEST_EFFECT,
    gates,
    headline,
    rate_parts,
    rule,
    saving_of,
    seed_arithmetic,
)
from repro.readers import InputError
from repro.verdicts import Verdict

# ---- placements ----


def test_sixteen_distinct_placements_and_the_three_modes():
    placements = all_placements()
    assert len(placements) == 16 == len(set(placements))
    assert MODES["hybrid"].label == "LRRL" and MODES["local"].label == "LLLL" and MODES["remote"].label == "RRRR"
    assert resolve_placement("LRRL") == MODES["hybrid"] and MODES["hybrid"].name == "hybrid"


def test_placement_file_round_trip(tmp_path):
    path = tmp_path / "hybrid.json"
    path.write_text(json.dumps(MODES["hybrid"].as_dict()))
    assert load_placement(path) == MODES["hybrid"] == resolve_placement(str(path))


@pytest.mark.parametrize("text, words", [
    (b'{"filter": "local", "collect": "remote", "patch": "remote", "plot": "local", "save": "local"}',
     ["unknown module", "save", "filter, collect, patch, plot"]),
    (b'{"filter": "local", "collect": "cloud", "patch": "remote", "plot": "local"}', ["unknown site", "cloud"]),
    (b'{"filter": "local", "collect": "remote"', ["not valid JSON", "line 1"]),
    (b'{"filter": "local", "collect": "remote"}', ["no site for module", "patch"]),
    (b'["local", "remote"]', ["expected a JSON object"]),
    (b'{"filter": 5, "collect": "remote", "patch": "remote", "plot": "local"}', ["'filter'", "must be a string"]),
    (b'\xff\xfe{"filter": "local"}', ["not UTF-8"]),
])
def test_placement_file_errors_are_one_line(tmp_path, text, words):
    path = tmp_path / "bad.json"
    path.write_bytes(text)
    with pytest.raises(InputError) as err:
        load_placement(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message


def test_unknown_placement_name_lists_the_choices(tmp_path):
    with pytest.raises(PlacementError, match="local, remote, hybrid"):
        resolve_placement(str(tmp_path / "nope.json"))
    with pytest.raises(InputError, match="does not exist"):
        load_placement(tmp_path / "missing.json")
    with pytest.raises(PlacementError):
        parse_placement({"filter": "local"} | {s: "local" for s in STAGES[1:]} | {"x": "y"})


# ---- the cost model and its map, on synthetic numbers ----

COSTS = StageCosts(
    compute_s={"filter": {"local": 1.0, "remote": 0.5}, "collect": {"local": 2.0, "remote": 0.5},
               "patch": {"local": 4.0, "remote": 1.0}, "plot": {"local": 0.5, "remote": 0.5}},
    output_bytes={"filter": 1000, "collect": 100_000, "patch": 500, "plot": 8000},
    input_bytes=2000,
    overhead_s=0.01,
)
LINK = LinkModel(bytes_per_s=10_000, latency_s=0.1)


def test_crossings_follow_the_data():
    assert crossings(MODES["local"], COSTS) == []
    assert crossings(MODES["remote"], COSTS) == [("filter", "upload", 2000), ("plot", "download", 8000)]
    assert crossings(MODES["hybrid"], COSTS) == [("collect", "upload", 1000), ("plot", "download", 500)]
    assert crossings(resolve_placement("LLRL"), COSTS) == [("patch", "upload", 100_000), ("plot", "download", 500)]


def test_predictions_by_hand():
    local = predict(MODES["local"], COSTS, LINK)
    assert local.wall_s == pytest.approx(7.5 + 4 * 0.01) and local.network_s == 0
    remote = predict(MODES["remote"], COSTS, LINK)
    # compute 2.5, pairs up 0.1 + 0.2, figure down 0.1 + 0.8
    assert remote.wall_s == pytest.approx(2.5 + 0.04 + 0.3 + 0.9)
    assert remote.stages["plot"]["download_s"] == pytest.approx(0.9)
    hybrid = predict(MODES["hybrid"], COSTS, LINK)
    assert hybrid.wall_s == pytest.approx(1.0 + 0.5 + 1.0 + 0.5 + 0.04 + (0.1 + 0.1) + (0.1 + 0.05))
    ranked = rank(COSTS, LINK)
    assert [p.placement for p in ranked][:2] == [resolve_placement("RRRL"), MODES["hybrid"]]
    assert ranked[-1].placement.site("collect") != ranked[-1].placement.site("patch")  # ships the cache
    assert prediction_error(1.1, 1.0) == pytest.approx(0.1)


def test_slowdown_rescales_only_the_throttled_stages_and_the_map_finds_where_hybrid_stops():
    slower = with_slowdown(COSTS, 6.0, ("collect", "patch"))
    assert slower.compute_s["patch"]["local"] == 6.0 and slower.compute_s["filter"] == COSTS.compute_s["filter"]
    assert measured_slowdown(COSTS, ("collect", "patch")) == pytest.approx(4.0)
    grid = placement_map(COSTS, ("collect", "patch"), efficiency=1.0, per_transfer_s=0.0,
                         rates=(0.01, 100.0, 10_000.0), slowdowns=(1.0, 4.0))
    assert grid["best"][0][0] == "LLLL"  # as fast at home and a crawling link: stay home
    assert grid["best"][1][0] == MODES["hybrid"].label  # slow home, slow link: only the heavy work moves
    assert grid["best"][1][-1] == "RRRL"  # a free link: Filter too goes where it is faster
    # At 4x: Hybrid 3.04 s + 1.5 kB on the link, Remote 2.54 s + 10 kB, Local 7.54 s. Hybrid leads by 5.5% at
    # 0.1 Mbit/s (3.16 vs 3.34 s); from 1 Mbit/s on Remote's faster Filter outweighs the link.
    limits = hybrid_limits(COSTS, ("collect", "patch"), 4.0, efficiency=1.0, per_transfer_s=0.0,
                           rates=(0.01, 0.1, 1.0, 10.0, 100.0))
    assert limits["fastest_up_to_mbit"] == 0.1 == limits["by_5pct_up_to_mbit"]
    assert limits["best_at_lowest_rate"] == "LRRL" and limits["best_at_highest_rate"] == "RRRL"


def test_seed_consistency_check_gives_twenty_percent_network():
    costs, link = seed_costs({"filter": 3000, "collect": 10**8, "patch": 2000, "plot": 40_000}, 3000)
    remote = predict(MODES["remote"], costs, link)
    assert remote.wall_s == pytest.approx(3.5) and remote.network_s / remote.wall_s == pytest.approx(0.2)
    assert predict(MODES["local"], costs, link).wall_s == pytest.approx(6.7)
    assert seed_arithmetic()["hybrid_saving_vs_local"] == pytest.approx(0.5224, abs=1e-4)
    assert not seed_arithmetic()["consistent"]  # 52%, not the stated 40%
    check = seed_check({"filter": 3000, "collect": 10**8, "patch": 2000, "plot": 40_000}, 3000)
    assert check["ordering"] == "hybrid < remote < local" and "re-computation" in check["title"]


# ---- the paired design and the rule ----


def test_rounds_are_abba_and_local_alternates_first_and_last():
    order = schedule(6, 3)
    assert [o.index("remote") < o.index("hybrid") for o in order] == [True, False, False, True, True, False]
    with_local = [o for o in order if "local" in o]
    assert len(with_local) == 3 and [o[0] == "local" for o in with_local] == [True, False, True]


class FakeRun:
    def __init__(self, wall, network=0.0, veth=None, moved=0):
        self.wall_s, self.network_s, self.veth_bytes = wall, network, veth
        self._moved = moved

    def dask_bytes(self):
        return {"upload": self._moved, "download": 0}


def block(remote, hybrid, local, rate=0.4, efficiency=0.95):
    """A measured rate from per-round walls (Local on the first len(local) rounds)."""
    b = RateBlock(rate, LinkModel(rate * 1e6 / 8 * efficiency), [])
    for i, (r, h) in enumerate(zip(remote, hybrid)):
        b.rounds.append({"remote": FakeRun(r, (0.19 + 0.01 * (i % 3)) * r), "hybrid": FakeRun(h)} | (
            {"local": FakeRun(local[i])} if i < len(local) else {}))
    return b


@pytest.mark.parametrize("remote, local, verdict", [
    ([3.5, 3.6, 3.4, 3.5, 3.55, 3.45], [6.7, 6.6, 6.8], Verdict.REPRODUCED),  # ~17% and ~2x faster
    ([3.0, 3.2, 3.1, 3.05, 3.15, 3.1], [6.7, 6.6, 6.8], Verdict.INCONCLUSIVE),  # a tie with Remote
    ([2.5, 2.6, 2.55, 2.5, 2.6, 2.52], [6.7, 6.6, 6.8], Verdict.NOT_REPRODUCED),  # Remote ~18% faster
    ([3.5, 2.7, 3.9, 2.6, 3.8, 2.9], [6.7, 6.6, 6.8], Verdict.INCONCLUSIVE),  # too noisy to say
])
def test_headline_rule(remote, local, verdict):
    hybrid = [3.0, 3.1, 2.95, 3.05, 3.0, 3.02]
    parts = rate_parts(block(remote, hybrid, local))
    assert headline(parts) == verdict
    assert parts["remote"].estimate.interval.n == 6 and parts["local"].estimate.interval.n == 3
    assert parts["share"].estimate.value == pytest.approx(0.2) and parts["share"].verdict == Verdict.REPRODUCED


def seed_walls():
    return [3.5, 3.6, 3.4, 3.5, 3.55, 3.45], [3.0, 3.1, 2.95, 3.05, 3.0, 3.02], [6.7, 6.6, 6.8]


def test_the_verdict_is_the_seed_links_headline_unless_a_gate_fails():
    seed = block([3.5, 3.6, 3.4, 3.5, 3.55, 3.45], [3.0, 3.1, 2.95, 3.05, 3.0, 3.02], [6.7, 6.6, 6.8])
    fast = block([3.0, 3.2, 3.1, 3.05, 3.15, 3.1], [3.0, 3.1, 2.95, 3.05, 3.0, 3.02], [6.7, 6.6, 6.8], rate=20)
    ok = dict(link_mode="shaped", link_kind="veth", stated_slowdown=3.0, slowdown=2.9, max_effect_diff=0.0, retried=0)
    ruling, by_rate = rule([seed, fast], gates([seed, fast], **ok), {"cpu": 6})
    assert ruling.verdict == Verdict.REPRODUCED and len(by_rate) == 2 and len(ruling.parts) == 8
    for broken in ({"slowdown": 1.2}, {"link_mode": "loopback"}, {"retried": 1}, {"max_effect_diff": 0.1}):
        failed = rule([seed, fast], gates([seed, fast], **(ok | broken)), {"cpu": 6})[0]
        assert failed.verdict == Verdict.INCONCLUSIVE and failed.decided_by.startswith("gate:")
    slow_link = block(*seed_walls(), efficiency=0.2)  # tbf not doing what it says
    assert not gates([slow_link], **ok)[0].passed
    assert gates([slow_link], **(ok | {"link_mode": "external"}))[0].passed  # a user's link is what it is
    short = block(*seed_walls())
    short.rounds[0]["hybrid"] = FakeRun(3.0, veth={"upload": 10, "download": 0}, moved=500)
    assert "veth" in gates([short], **ok)[0].detail and not gates([short], **ok)[0].passed


def test_saving_is_the_log_ratio_transformed():
    from repro.intervals import t_estimate

    ratio = t_estimate([math.log(6.7 / 3.2), math.log(6.5 / 3.3), math.log(6.9 / 3.1)], units="rounds")
    saving = saving_of(ratio)
    assert saving.value == pytest.approx(1 - math.exp(-ratio.value))
    assert saving.interval.low < saving.value < saving.interval.high and saving.interval.n == 3
    assert pytest.approx(math.log(1.05)) == SMALLEST_EFFECT


def test_machine_use_between_samples():
    before = {"load1": 1.0, "idle": 100, "steal": 0, "total": 1000, "cpus": 2}
    after = {"load1": 2.5, "idle": 150, "steal": 10, "total": 1200, "cpus": 2}
    assert machine_use(before, after) == {"load1": 2.5, "busy": 0.75, "steal": 0.05}


# ---- a cluster a user can run: stdlib glue, a scheduler without the suite ----


def test_portable_glue_calls_the_stage_with_its_input():
    # What the scheduler unpickles is the standard library and bytes; the worker gets int("101", base=2).
    reduce, call, blob, loads = portable(int, base=2)
    assert {f.__module__ for f in (reduce, call, loads)} <= {"_functools", "_operator", "_pickle", "operator"}
    assert isinstance(blob, bytes) and reduce(call, [blob, "101"], loads) == 5


def test_scheduler_without_the_suite_runs_glue_but_not_suite_functions():
    from repro.placement.engine import Cluster, WorkerSpec

    with linkmod.open_link(linkmod.LinkSpec(), shaped=False) as link, \
            Cluster(link, WorkerSpec(1, nanny=False), WorkerSpec(1, nanny=False)) as cluster:
        data = cluster.client.scatter("LRRL", workers=[cluster.site_address("local")], direct=False)
        assert cluster.submit(resolve_placement, data, at="remote", key="glue").result(timeout=60) == MODES["hybrid"]
        naive = cluster.client.submit(resolve_placement, data, resources={"remote": 1}, pure=False)
        with pytest.raises(Exception, match="deserializ"):  # the scheduler cannot import repro
            naive.result(timeout=60)


# ---- the link and the cgroups: made, removed, nothing left behind ----

needs_root = pytest.mark.skipif(linkmod.can_shape() is not None, reason=f"no namespaces here: {linkmod.can_shape()}")
needs_cgroups = pytest.mark.skipif(can_pin() is not None, reason=f"no cgroups here: {can_pin()}")


def test_teardown_defers_a_signal_until_it_is_done():
    # The signal arrives while other threads run (as the Dask client's IO thread does) and is raised after.
    from repro.placement.teardown import signals_held

    seen, busy = [], threading.Event()
    worker = threading.Thread(target=busy.wait, daemon=True)
    worker.start()
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: seen.append(signum))
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.2)
            assert seen == []
        assert seen == [signal.SIGHUP]
    finally:
        signal.signal(signal.SIGHUP, previous)
        busy.set()


@needs_root
def test_shaped_link_is_made_reshaped_counted_and_removed():
    with linkmod.ShapedLink(linkmod.LinkSpec(rate_mbit=5), prefix="tst") as link:
        assert link.kind == linkmod.SHAPED and len(link.inodes) == 2
        link.set_rate(0.4)
        qdisc = subprocess.run(["tc", "-n", link.remote_ns, "qdisc", "show"], capture_output=True, text=True).stdout
        assert "tbf" in qdisc and "400Kbit" in qdisc and link.rates == [5, 0.4]
        before = link.counters()
        ping = subprocess.run([*link.command_in(link.local_ns, ["python3", "-c", (
            "import socket; s = socket.socket(); s.settimeout(2); "
            f"print(s.connect_ex(('{link.remote_host}', 9)))")])], capture_output=True, text=True)
        assert ping.stdout.strip() == "111"  # connection refused: the other side answers, nobody listens
        after = link.counters()
        assert after["upload"] > before["upload"] and after["download"] > before["download"]
        inodes = link.inodes
    assert linkmod.leftovers("tst", inodes=inodes) == []


@needs_root
def test_nothing_is_left_after_a_failure_inside_or_during_setup(monkeypatch):
    with pytest.raises(RuntimeError, match="boom"), linkmod.ShapedLink(linkmod.LinkSpec(), prefix="tst"):
        raise RuntimeError("boom")
    assert linkmod.leftovers("tst") == []
    real = linkmod._run

    def failing(argv):  # fail at tc, after both namespaces and the veth pair exist
        if argv[0] == "tc":
            raise linkmod.LinkError("tc refused")
        real(argv)

    monkeypatch.setattr(linkmod, "_run", failing)
    with pytest.raises(linkmod.LinkError, match="tc refused"):
        linkmod.ShapedLink(linkmod.LinkSpec(), prefix="tst").__enter__()
    assert linkmod.leftovers("tst") == []


def test_loopback_fallback_is_labelled():
    with linkmod.open_link(linkmod.LinkSpec(), shaped=False) as link:
        assert link.kind.startswith(linkmod.LOOPBACK) and link.local_ns is None and link.counters() is None
        assert link.command_in(None, ["x"]) == ["x"]


PROBE = Path(__file__).with_name("placement_probe.py")


def _probe(phase: str):
    """Start the probe at ``phase``; return it and what it said until it got there."""
    proc = subprocess.Popen([sys.executable, str(PROBE), phase], stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    said, deadline = [], time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        said.append(line.split())
        if line.startswith("at "):
            return proc, said
    proc.kill()
    raise AssertionError(f"the probe never reached {phase}: {said}")


def _left(said) -> list[str]:
    pid = int(next(w[1] for w in said if w[0] == "pid"))
    inodes = tuple(int(w[2]) for w in said if w[0] == "netns")
    return (linkmod.leftovers("prb", pid, inodes) + leftover_cgroups("prb", pid)
            + [f"process {p}" for p in owned_processes(pid)])


@needs_root
@needs_cgroups
@pytest.mark.parametrize("phase, sig", [("namespace", signal.SIGTERM), ("cluster", signal.SIGHUP),
                                        ("run", signal.SIGTERM)])
def test_a_signal_at_any_phase_leaves_nothing(phase, sig):
    proc, said = _probe(phase)
    if phase != "namespace":
        time.sleep(0.5)  # the processes of the phase are up
        assert owned_processes(proc.pid) or phase == "namespace"
    proc.send_signal(sig)
    assert proc.wait(timeout=30) != 0
    assert _left(said) == []


@needs_root
@needs_cgroups
def test_the_cluster_dies_with_its_parent():
    # SIGKILL leaves the parent no teardown: the kernel's parent-death signal must stop the scheduler and the
    # workers. (The namespaces and cgroups stay, unowned; removed here.)
    proc, said = _probe("run")
    pid = proc.pid
    assert owned_processes(pid)
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 15
    while owned_processes(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert owned_processes(pid) == []
    finally:
        for ns in linkmod.namespace_names("prb", pid):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        for left in leftover_cgroups("prb", pid):
            path = Path(left.split()[1])
            for child in path.iterdir():
                if child.is_dir():
                    child.rmdir()
            path.rmdir()
    assert _left(said) == []


# ---- a remote worker killed mid-stage ----


@pytest.fixture(scope="module")
def tiny():
    # The smallest real run: SmolLM2 on 2 pairs (a random-init model would filter every pair out).
    from repro.assets import AssetError
    from repro.ioi.dataset import generate_pairs, tokenize_pairs
    from repro.models import load_model
    from repro.placement.stages import Pairs, Site

    try:
        tok = load_model("smollm2-135m").tokenizer
    except AssetError as err:
        pytest.skip(f"smollm2-135m unavailable: {err}")
    pairs = generate_pairs(tok, 2, 0)
    return Pairs(pairs, tokenize_pairs(tok, pairs)), {s: Site("smollm2-135m", threads=1) for s in ("local", "remote")}


def _kill_remote_when_busy(cluster, stage="", sig=signal.SIGKILL, whole_site=False):
    """Kill the remote worker as soon as it is given a task of ``stage`` (any stage if empty); returns the
    thread doing it."""
    remote = cluster.site_address("remote")
    pid = cluster.worker_pid("remote")

    def watch():
        for _ in range(1200):
            busy = cluster.client.processing(workers=[remote]).get(remote) or ()
            if any(str(key).startswith(stage) for key in busy):
                if whole_site:  # the nanny too: nothing restarts the site
                    for proc in cluster.processes:
                        if "remote=1" in proc.args:
                            os.killpg(proc.pid, sig)
                os.kill(pid, sig)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_killed_remote_worker_is_replaced_reloads_its_model_and_the_run_completes(tiny):
    # Killed in Patch: everything the remote site held is lost, so the scheduler recomputes Filter and Collect
    # from the workstation's copy of the pairs, which must still be there (the Active Memory Manager is
    # paused for that). The replacement worker loads the model through the plugin before it gets a task.
    from repro.placement.engine import Cluster, WorkerSpec
    from repro.placement.pipeline import run_pipeline
    from repro.placement.stages import ModelPlugin, cold_start

    data, sites = tiny
    with linkmod.open_link(linkmod.LinkSpec(), shaped=False) as link, \
            Cluster(link, WorkerSpec(1), WorkerSpec(1, nanny=True)) as cluster:
        assert not cluster.client.amm.running()
        first = cluster.load_models(ModelPlugin(sites))["remote"]
        clean = run_pipeline(cluster, MODES["remote"], data, sites)
        killer = _kill_remote_when_busy(cluster, "patch")
        run = run_pipeline(cluster, MODES["remote"], data, sites, site_lost_s=120)
        killer.join(timeout=60)
        remote = cluster.site_address("remote")
        again = cluster.client.run(cold_start, workers=[remote])[remote]
        # Every worker, the replacement included, keeps glibc's default allocator (engine.WORKER_DASK_CONFIG).
        trim = cluster.client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
    assert list(trim.values()) == [None, None]
    assert run.retried and not clean.retried
    assert (run.effects.heads == clean.effects.heads).all()
    assert again["pid"] != first["pid"] and again["seconds"] > 0


def test_dead_remote_site_stops_the_run_with_a_clear_error(tiny, tmp_path):
    from repro.placement.engine import Cluster, EngineError, WorkerSpec
    from repro.placement.pipeline import run_pipeline

    data, sites = tiny
    with linkmod.open_link(linkmod.LinkSpec(), shaped=False) as link, \
            Cluster(link, WorkerSpec(1), WorkerSpec(1, nanny=False)) as cluster:
        killer = _kill_remote_when_busy(cluster, whole_site=True)
        with pytest.raises(EngineError, match=r"remote worker died during stage .* no timing was written"):
            run_pipeline(cluster, MODES["remote"], data, sites, site_lost_s=2)
        killer.join(timeout=60)
        processes = list(cluster.processes)
    assert all(p.poll() is not None for p in processes)  # the cluster stopped everything it started


# ---- the command line refuses bad input before any long work ----


@pytest.mark.parametrize("argv, words", [
    (["--placement", "LRX"], ["not a mode", "LRRL"]),
    (["--rates", "0"], ["--rates", "0.01..10000"]),
    (["--rates", "fast"], ["--rates", "comma"]),
    (["--n-pairs", "1000000"], ["--n-pairs 1000000 is out of range", "1..1000"]),
    (["--n-pairs", "0"], ["--n-pairs 0 is out of range"]),
    (["--rounds", "1"], ["--rounds 1 is out of range"]),
    (["--rounds", "2", "--local-rounds", "3"], ["exceeds --rounds"]),
    (["--local-slowdown", "0.5"], ["--local-slowdown 0.5 is out of range"]),
    (["--throttled-stages", "collect,save"], ["--throttled-stages", "filter, collect"]),
    (["--scheduler", "host:8786"], ["tcp://host:8786"]),
    (["--profile", "tpu"], ["Unknown profile", "cpu, gpu"]),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, words, tmp_path, capsys):
    from repro.placement.cli import main

    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("python -m repro hybrid: error:")
    for word in words:
        assert word in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b'{"filter": "local", "collect": "gpu", "patch": "remote", "plot": "local"}',
                                     b"\xff\xfe\x00garbage", b'{"filter": "local",'])
def test_cli_bad_placement_file(tmp_path, capsys, content):
    from repro.placement.cli import main

    bad = tmp_path / "hybrid.json"
    bad.write_bytes(content)
    assert main(["--placement", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and "Traceback" not in err


def test_cli_unreachable_scheduler_is_one_line_within_15_s(tmp_path, capsys):
    from repro.placement.cli import main

    start = time.monotonic()
    # 192.0.2.0/24 is TEST-NET-1: never routed, so the connection hangs until the timeout
    assert main(["--scheduler", "tcp://192.0.2.1:8786", "--connect-timeout", "2", "--out", str(tmp_path / "o")]) == 2
    assert time.monotonic() - start < 15
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot reach the Dask scheduler at tcp://192.0.2.1:8786" in err
    assert main(["--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path / "o")]) == 2  # refused: at once
    assert time.monotonic() - start < 15

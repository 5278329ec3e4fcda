"""Claim 6's building blocks: placements, the cost model, the verdict rule, the link's setup and teardown,
and a remote worker killed mid-stage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from repro.placement import link as linkmod
from repro.placement.costmodel import LinkModel, StageCosts, crossings, predict
from repro.placement.optimiser import prediction_error, rank
from repro.placement.placement import (
    MODES,
    STAGES,
    PlacementError,
    all_placements,
    load_placement,
    parse_placement,
    resolve_placement,
)
from repro.placement.scenarios import seed_costs
from repro.placement.verdict import mode_verdict, seed_arithmetic

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
    ('{"filter": "local", "collect": "remote", "patch": "remote", "plot": "local", "save": "local"}',
     ["unknown module", "save", "filter, collect, patch, plot"]),
    ('{"filter": "local", "collect": "cloud", "patch": "remote", "plot": "local"}',
     ["unknown site", "cloud", "local, remote"]),
    ('{"filter": "local", "collect": "remote"', ["malformed JSON", "line 1"]),
    ('{"filter": "local", "collect": "remote"}', ["no site for module", "patch"]),
    ('["local", "remote"]', ["expected a JSON object"]),
])
def test_placement_file_errors_are_clear(tmp_path, text, words):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(PlacementError) as err:
        load_placement(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message


def test_unknown_placement_name_lists_the_choices(tmp_path):
    with pytest.raises(PlacementError, match="local, remote, hybrid"):
        resolve_placement(str(tmp_path / "nope.json"))
    with pytest.raises(PlacementError, match="Cannot read"):
        load_placement(tmp_path / "missing.json")
    with pytest.raises(PlacementError):
        parse_placement({"filter": "local"} | {s: "local" for s in STAGES[1:]} | {"x": "y"})


# ---- the cost model, on synthetic numbers ----

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


def test_seed_scenario_link_gives_twenty_percent_network():
    costs, link = seed_costs({"filter": 3000, "collect": 10**8, "patch": 2000, "plot": 40_000}, 3000)
    remote = predict(MODES["remote"], costs, link)
    assert remote.wall_s == pytest.approx(3.5) and remote.network_s / remote.wall_s == pytest.approx(0.2)
    assert predict(MODES["local"], costs, link).wall_s == pytest.approx(6.7)
    assert seed_arithmetic()["hybrid_saving_vs_local"] == pytest.approx(0.5224, abs=1e-4)
    assert not seed_arithmetic()["consistent"]  # 52%, not the stated 40%


# ---- the verdict rule ----


@pytest.mark.parametrize("walls, verdict, ordering", [
    ({"local": [10, 10.5], "remote": [5, 5.2], "hybrid": [4, 4.2]}, "REPRODUCED", "hybrid < remote < local"),
    ({"local": [10, 10.5], "remote": [4.1, 4.5], "hybrid": [4, 4.2]}, "PARTIAL", "hybrid ~ remote < local"),
    ({"local": [10, 10.5], "remote": [4.0, 4.1], "hybrid": [4.05, 4.6]}, "PARTIAL", "remote ~ hybrid < local"),
    ({"local": [10, 10.5], "remote": [3.0, 3.1], "hybrid": [4.0, 4.2]}, "NOT_REPRODUCED", "remote < hybrid < local"),
    ({"local": [3.0], "remote": [3.5], "hybrid": [3.3]}, "NOT_REPRODUCED", "local < hybrid < remote"),
])
def test_verdict_rule(walls, verdict, ordering):
    judged = mode_verdict(walls)
    assert (judged.verdict, judged.ordering) == (verdict, ordering)


def test_five_percent_margin_without_overlap_is_needed():
    # 4% faster with disjoint ranges is still a tie; 6% faster with overlapping ranges too.
    assert mode_verdict({"local": [9], "remote": [1.00, 1.01], "hybrid": [0.96, 0.97]}).verdict == "PARTIAL"
    assert mode_verdict({"local": [9], "remote": [1.0, 0.93, 1.1], "hybrid": [0.94, 0.95]}).verdict == "PARTIAL"


# ---- the link: namespaces, veth, tbf; nothing left behind ----

needs_root = pytest.mark.skipif(linkmod.can_shape() is not None, reason=f"no namespaces here: {linkmod.can_shape()}")


def _state() -> tuple[str, str]:
    return (subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout,
            subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout)


def test_teardown_defers_a_signal_until_it_is_done():
    # The signal arrives while other threads run (as the Dask client's IO thread does) and is raised after.
    from repro.placement.engine import signals_held

    seen, busy = [], threading.Event()
    worker = threading.Thread(target=busy.wait, daemon=True)
    worker.start()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            assert seen == []
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
        busy.set()


@needs_root
def test_shaped_link_is_made_and_removed():
    before = _state()
    with linkmod.ShapedLink(linkmod.LinkSpec(rate_mbit=5), prefix="tst") as link:
        assert link.kind == linkmod.SHAPED
        assert set(linkmod.namespace_names("tst")) <= set(_state()[0].split())
        qdisc = subprocess.run(["tc", "-n", link.remote_ns, "qdisc", "show"], capture_output=True, text=True).stdout
        assert "tbf" in qdisc and "5Mbit" in qdisc
        ping = subprocess.run([*link.command_in(link.local_ns, ["python3", "-c", (
            "import socket; s = socket.socket(); s.settimeout(2); "
            f"print(s.connect_ex(('{link.remote_host}', 9)))")])], capture_output=True, text=True)
        assert ping.stdout.strip() == "111"  # connection refused: the other side answers, nobody listens
        assert link.remote_host not in _state()[1]
    assert linkmod.leftovers("tst") == [] and _state()[0] == before[0]


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
        assert link.kind.startswith(linkmod.LOOPBACK) and link.local_ns is None
        assert link.command_in(None, ["x"]) == ["x"]


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


def test_killed_remote_worker_is_replaced_and_the_run_completes(tiny):
    # Killed in Patch: everything the remote site held is lost, so the scheduler recomputes Filter and Collect
    # from the workstation's copy of the pairs, which must still be there. (The Active Memory Manager used to
    # drop that copy as a superfluous replica; the run then waited forever, and CI hung.)
    from repro.placement.engine import Cluster, WorkerSpec
    from repro.placement.pipeline import run_pipeline

    data, sites = tiny
    with linkmod.open_link(linkmod.LinkSpec(), shaped=False) as link, \
            Cluster(link, WorkerSpec(1), WorkerSpec(1, nanny=True)) as cluster:
        assert not cluster.client.amm.running()
        clean = run_pipeline(cluster, MODES["remote"], data, sites)
        killer = _kill_remote_when_busy(cluster, "patch")
        run = run_pipeline(cluster, MODES["remote"], data, sites, site_lost_s=120)
        killer.join(timeout=60)
    assert run.retried and not clean.retried
    assert (run.effects.heads == clean.effects.heads).all()


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
    (["--rate-mbit", "0"], ["--rate-mbit must be positive"]),
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


def test_cli_bad_placement_file(tmp_path, capsys):
    from repro.placement.cli import main

    bad = tmp_path / "hybrid.json"
    bad.write_text('{"filter": "local", "collect": "gpu", "patch": "remote", "plot": "local"}')
    assert main(["--placement", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "unknown site" in capsys.readouterr().err

"""Unit tests of repro.split: the cut, the counts, the timing bookkeeping, the verdict rule.

Exact seed counts need GPT-2 small's shapes (gpt2-random, ~8 s to build, loaded once); everything else
runs on tiny GPT-2 and LLaMA configs built in milliseconds.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from toy_models import as_loaded, toy_gpt2, toy_llama

from repro import profiles
from repro.models import LoadedModel, load_model
from repro.profiles import SplitSettings, get_profile
from repro.split import cli, run_split, split_parts, split_ruling
from repro.split.counting import component_flops, lm_head_macs
from repro.split.parts import lm_head_is_tied, param_counts
from repro.split.roofline import lm_head_roofline
from repro.split.timing import PairedTiming, PartTimes, time_pairs
from repro.split.verdict import RATIO
from repro.timing import torch_threads
from repro.verdicts import ClaimResult, Verdict

# Seed 002's per-component parameter counts for GPT-2 small, exact (38.60M / 0.79M / 14.18M per two blocks).
SEED_PARAMS = {
    "bottom": {
        "token embedding": 38_597_376,
        "position embedding": 786_432,
        "block 0": 7_087_872,
        "block 1": 7_087_872,
    },
    "top": {"block 10": 7_087_872, "block 11": 7_087_872, "final norm": 1_536, "lm head": 38_597_376},
}
# One thread: tiny models gain nothing from more, and a second thread stalls whenever the machine is shared.
TINY_THREADS = 1
TINY_SETTINGS = SplitSettings(
    cut=2, seq_len=6, warmup=1, pairs=5, seq_lens=(1, 6), sweep_pairs=3, threads=(1,), timing_threads=TINY_THREADS
)
TINY_PROFILE = replace(get_profile("cpu"), split=TINY_SETTINGS)


def _leaves(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _leaves(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _leaves(value)
    else:
        yield tree


@pytest.fixture(scope="module")
def gpt2_random() -> LoadedModel:
    return load_model("gpt2-random")


@pytest.fixture(scope="module")
def tiny_gpt2() -> LoadedModel:
    return as_loaded(toy_gpt2(n_layer=4, n_embd=32, vocab_size=101), "tiny-gpt2")


@pytest.fixture(scope="module")
def tiny_llama() -> LoadedModel:
    config = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=4, vocab_size=101, tie_word_embeddings=True
    )
    return as_loaded(toy_llama(**config), "tiny-llama")


@pytest.fixture(scope="module", params=["tiny_gpt2", "tiny_llama"])
def tiny(request) -> LoadedModel:
    return request.getfixturevalue(request.param)


def test_parameter_counts_match_the_seed_exactly(gpt2_random):
    bottom, top = split_parts(gpt2_random.adapter, cut=2)
    assert param_counts(bottom) == SEED_PARAMS["bottom"]
    assert param_counts(top) == SEED_PARAMS["top"]
    # GPT-2 ties the head to the token embedding; it is still counted on its own, as in the seed.
    assert lm_head_is_tied(gpt2_random.adapter)


def test_mac_counts_at_the_seed_shape(gpt2_random):
    bottom, top = split_parts(gpt2_random.adapter, cut=2)
    ids = torch.zeros(1, 6, dtype=torch.long)
    bottom_flops, bottom_attention, hidden = component_flops(bottom, ids)
    top_flops, top_attention, _ = component_flops(top, hidden)
    assert top_flops["lm head"] == 2 * lm_head_macs(1, 6, 768, 50257) == 2 * 231_584_256
    # The seed's "0.08 / 0.32 GFLOPS" are MACs of the weight matmuls (attention's QK^T, AV left out).
    assert round((sum(bottom_flops.values()) - sum(bottom_attention.values())) / 2e9, 2) == 0.08
    assert round((sum(top_flops.values()) - sum(top_attention.values())) / 2e9, 2) == 0.32
    assert bottom_attention["block 0"] == 2 * 2 * 6 * 6 * 768  # QK^T and AV: 2 s^2 d MACs


def test_bottom_then_top_is_the_whole_model(tiny):
    bottom, top = split_parts(tiny.adapter, cut=2)  # 4 layers: the two parts cover every block
    ids = torch.randint(0, tiny.adapter.d_vocab, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(top(bottom(ids)), tiny.model(ids).logits, rtol=1e-5, atol=1e-5)


def test_components_are_named_in_order(tiny_gpt2, tiny_llama):
    bottom, top = split_parts(tiny_gpt2.adapter, cut=2)
    assert bottom.names == ("token embedding", "position embedding", "block 0", "block 1")
    assert top.names == ("block 2", "block 3", "final norm", "lm head")
    bottom, top = split_parts(tiny_llama.adapter, cut=1)  # rotary: no position embedding component
    assert bottom.names == ("token embedding", "block 0")
    assert top.names == ("block 3", "final norm", "lm head")


def test_cut_that_does_not_fit_is_refused(tiny_gpt2):
    with pytest.raises(ValueError, match="cut=3"):
        split_parts(tiny_gpt2.adapter, cut=3)


def test_mac_counts_equal_the_analytic_formulas(tiny):
    a = tiny.adapter
    bottom, top = split_parts(a, cut=2)
    s = 5
    bottom_flops, bottom_attention, hidden = component_flops(bottom, torch.zeros(1, s, dtype=torch.long))
    top_flops, _, _ = component_flops(top, hidden)
    assert top_flops["lm head"] == 2 * lm_head_macs(1, s, a.d_model, a.d_vocab)
    assert bottom_flops["token embedding"] == top_flops["final norm"] == 0
    if a.family == "gpt2":
        # Per block: QKV + output projection 4 s d^2, MLP 8 s d^2, attention scores and mixing 2 s^2 d.
        d = a.d_model
        assert bottom_flops["block 0"] == 2 * (12 * s * d * d + 2 * s * s * d)
        assert bottom_attention["block 0"] == 2 * (2 * s * s * d)


def test_component_times_add_up_to_the_totals(tiny):
    bottom, top = split_parts(tiny.adapter, cut=2)
    ids = torch.zeros(1, 6, dtype=torch.long)
    timing = time_pairs(bottom, top, ids, pairs=7, warmup=1, threads=TINY_THREADS)
    for part in (timing.bottom, timing.top):
        assert part.ns.shape == (7, len(part.names))
        assert (part.ns > 0).all()
        np.testing.assert_allclose(part.shares.sum(axis=1), 1.0)
        assert sum(part.component_ms().values()) == pytest.approx(part.median_ms(), rel=1e-12)
    assert len(timing.ratios) == 7


def test_thread_count_is_restored():
    before = torch.get_num_threads()
    with torch_threads(1) as n:
        assert n == torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def synthetic_timing(ratio: float, lm_head_share: float, pairs: int = 41, noise: float = 0.05, seed: int = 0):
    """Timing pairs whose Top/Bottom ratio and LM-head share are known (lognormal noise per call)."""
    rng = np.random.default_rng(seed)
    bottom_ns = (1e6 * np.exp(rng.normal(0, noise, (pairs, 1)))).astype(np.int64)
    top_total = 1e6 * ratio * np.exp(rng.normal(0, noise, pairs))
    rest = (1 - lm_head_share) / 3
    top_ns = (top_total[:, None] * np.array([rest, rest, rest, lm_head_share])).astype(np.int64)
    return PairedTiming(6, 1, PartTimes(("all",), bottom_ns), PartTimes(("block 10", "block 11", "final norm", "lm head"), top_ns))


@pytest.mark.parametrize(
    "ratio, share, noise, pairs, expected, decided_by",
    [
        (3.14, 0.72, 0.05, 41, Verdict.REPRODUCED, "region"),
        (1.2, 0.11, 0.05, 41, Verdict.NOT_REPRODUCED, "region"),  # launch-bound, as on the H100
        (3.0, 0.20, 0.05, 41, Verdict.PARTIAL, "region"),  # slow Top, but not because of the LM head
        (2.0, 0.72, 0.3, 41, Verdict.INCONCLUSIVE, "region"),  # a noisy ratio at the threshold
        (3.14, 0.72, 0.05, 5, Verdict.INCONCLUSIVE, "gate: enough timing pairs (5 interleaved pairs (need >= 20))"),
    ],
)
def test_verdict_rule(ratio, share, noise, pairs, expected, decided_by):
    ruling, estimates = split_ruling(synthetic_timing(ratio, share, pairs, noise), {"cpu": 41, "gpu": 400})
    assert ruling.verdict == expected and ruling.decided_by == decided_by
    assert estimates[RATIO].value == pytest.approx(ratio, rel=0.15)
    if expected == Verdict.INCONCLUSIVE and decided_by == "region":
        assert "interleaved pairs would decide" in ruling.to_decide


def test_one_pair_cannot_decide():
    ruling, _ = split_ruling(synthetic_timing(3.14, 0.72, pairs=1))
    assert ruling.verdict == Verdict.INCONCLUSIVE and ruling.decided_by.startswith("gate: enough timing pairs")


def test_roofline_bounds():
    # GPT-2's head: 154 MB of fp32 weight; at 1 token it is memory-bound, at 512 tokens compute-bound.
    short = lm_head_roofline(1, 768, 50257, 4, bandwidth=20e9, peak_flops=100e9)
    long = lm_head_roofline(512, 768, 50257, 4, bandwidth=20e9, peak_flops=100e9)
    assert short["bound"] == "memory" and long["bound"] == "compute"
    assert short["memory_ms"] == pytest.approx(1e3 * 4 * (768 * 50257 + 768 + 50257) / 20e9)
    assert long["predicted_ms"] == pytest.approx(1e3 * 2 * 512 * 768 * 50257 / 100e9)
    assert short["intensity"] < short["ridge"] < long["intensity"]


def test_run_split_end_to_end(tiny, tmp_path):
    result = run_split(tiny, TINY_PROFILE, tmp_path, progress=False)
    assert isinstance(result, ClaimResult)
    snapshot = result.snapshot()
    assert set(snapshot) == {
        "model",
        "cut",
        "shape",
        "params",
        "macs",
        "weight_macs",
        "flops",
        "lm_head_macs_analytic",
    }
    assert all(isinstance(v, (int, str)) for v in _leaves(snapshot))  # counts only: no timings
    assert snapshot["macs"]["top"]["lm head"] == snapshot["lm_head_macs_analytic"]
    numbers = result.numbers()
    assert numbers["timing pairs"] == TINY_SETTINGS.pairs
    sweep = numbers["sweep over threads and sequence length"]
    assert {(r["threads"], r["seq_len"]) for r in sweep} == {(TINY_THREADS, 1), (TINY_THREADS, 6)}
    assert numbers["threads (headline timing)"] == TINY_THREADS
    assert [r["seq_len"] for r in numbers["LM head roofline"]] == [1, 6]
    for part in ("bottom", "top"):
        assert sum(result.component_ms(part).values()) == pytest.approx(result.total_ms(part), rel=1e-9)
    for path in result.figures.values():
        assert path.is_file() and path.name.startswith(f"{tiny.key}-split-")
    measurement = result.measurement()
    assert measurement.verdict == result.verdict
    assert measurement.key_number.published == 3.14


def test_cli_prints_the_seed_analysis_and_writes_summary_and_figures(gpt2_random, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(profiles.PROFILES, "cpu", TINY_PROFILE)  # seconds, not the profile's minute
    out = tmp_path / "split"
    assert cli.main(["--model", "gpt2-random", "--cut", "2", "--seq-len", "6", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    for seen in ("38.60", "53.56", "52.77", "0.2316", "Ratio Top/Bottom", "IQR", "Verdict"):
        assert seen in printed, seen
    summary = json.loads((out / "gpt2-random-split-summary.json").read_text())
    assert summary["counts"]["params"]["bottom"]["total"] == sum(SEED_PARAMS["bottom"].values())
    assert summary["settings"]["pairs"] == TINY_SETTINGS.pairs
    assert sorted(p.name for p in out.glob("*.png")) == summary["figures"] == [
        "gpt2-random-split-components.png",
        "gpt2-random-split-lm-head-roofline.png",
        "gpt2-random-split-ratio-vs-seqlen.png",
    ]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--cut", "0"], "argument --cut: 0 is out of range; give >= 1"),
        (["--seq-len", "-3"], "argument --seq-len: -3 is out of range; give >= 1"),
        (["--pairs", "1"], "argument --pairs: 1 is out of range; give 20..10000 (fewer cannot pass the verdict's gate"),
        (["--cut", "7"], "--cut 7 does not fit gpt2-random (12 blocks)"),
        (["--seq-len", "1025"], "--seq-len 1025 does not fit gpt2-random: it must be in 1..1024"),
        (["--profile", "laptop"], "Unknown profile 'laptop'"),
    ],
)
def test_cli_refuses_bad_input_with_one_line(gpt2_random, tmp_path, capsys, argv, message):
    out = tmp_path / "split"
    try:
        code = cli.main(["--model", "gpt2-random", *argv, "--out", str(out)])
    except SystemExit as refused:  # argparse's range checks (int_in)
        code = refused.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()  # refused before any output

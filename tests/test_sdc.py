"""Claim 4's parts: bit flips, the exposed attention, the bounds and checksums, detection, strata, harm,
and the resumable sweep with its settings."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from toy_models import toy_gpt2, toy_llama

from repro import hooks
from repro.adapters import adapter_for
from repro.attention import exposed_attention, exposed_attention_forward
from repro.sdc import bounds
from repro.sdc.bounds import Precision
from repro.sdc.checksums import checksum_uses
from repro.sdc.detection import BoundsDetector, ChecksumDetector
from repro.sdc.injection import FaultInjector, InjectionConfig, bit_class, bits_class, flip_bits, installed
from repro.sdc.sweeps import ParameterSweepConfig, ResultsLog, run_sweep, template

IDS = torch.randint(0, 500, (2, 9), generator=torch.Generator().manual_seed(3))

# ---- bit flips ----


@pytest.mark.parametrize(("dtype", "np_int", "bits"), [
    (torch.float32, np.int32, {"sign": 31, "exponent": 27, "mantissa": 5}),
    (torch.bfloat16, np.int16, {"sign": 15, "exponent": 10, "mantissa": 3}),
])
def test_a_flip_changes_exactly_that_bit(dtype, np_int, bits):
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0)).to(dtype)
    int_view = torch.int32 if dtype == torch.float32 else torch.int16
    for cls, bit in bits.items():
        assert bit_class(bit, dtype) == cls
        flipped = flip_bits(x, (2, 3), (bit,))
        before = x.view(int_view).numpy().view(np_int)
        after = flipped.view(int_view).numpy().view(np_int)
        diff = (before ^ after).view(np.uint32 if np_int is np.int32 else np.uint16)
        expected = np.zeros_like(diff)
        expected[2, 3] = 1 << bit
        assert np.array_equal(diff, expected), cls
    assert torch.equal(flip_bits(flip_bits(x, (0, 0), (bits["exponent"], 2)), (0, 0), (bits["exponent"], 2)), x)


def test_an_exponent_flip_can_make_inf_or_nan():
    # 1.0 and 1.5 have the biased exponent 127 = 0b01111111; setting bit 30 makes it 255: Inf or NaN.
    assert torch.isinf(flip_bits(torch.tensor([1.0]), (0,), (30,)))[0]
    assert torch.isnan(flip_bits(torch.tensor([1.5]), (0,), (30,)))[0]


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(location="attn"), "Unknown location"),
    (dict(probability=1.5), "outside \\[0, 1\\]"),
])
def test_bad_configs_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InjectionConfig(**{"location": "q", "layer": 0, "bits": (3,), **kwargs})
    with pytest.raises(ValueError, match="at least one bit"):
        FaultInjector(InjectionConfig("q", 0, ()))


def test_multi_bit_faults_are_classed_by_all_their_bits():
    assert bits_class((30,)) == "exponent" and bits_class((31, 3)) == "sign+mantissa"
    assert bits_class((25, 3, 30)) == "exponent+mantissa"


def test_bits_and_indices_outside_the_tensor_are_refused():
    with pytest.raises(ValueError, match="Bit 16 is out of range for bfloat16"):
        InjectionConfig("q", 0, (16,)).check(torch.bfloat16, 2)
    with pytest.raises(ValueError, match="Layer 5 is outside"):
        InjectionConfig("q", 5, (1,)).check(torch.float32, 2)
    with pytest.raises(ValueError, match="out of bounds"):
        FaultInjector(InjectionConfig("q", 0, (1,), index=(0, 9))).inject(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="Unknown sweep template"):
        template("nope")


def test_history_replays_the_same_faults():
    x = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0))
    injector = FaultInjector(InjectionConfig("v", 1, (30, 3), probability=0.5, seed=7))
    outs = [injector.inject(x) for _ in range(6)]
    assert 0 < len(injector.history) < 6  # probabilistic per call
    replay = FaultInjector.replaying(injector.config, injector.history)
    # Bit patterns, not values: flipping bit 30 of a value in [1, 2) makes a NaN, and NaN != NaN.
    assert all(torch.equal(a.view(torch.int32), replay.inject(x).view(torch.int32)) for a in outs)
    assert repr(replay.history) == repr(injector.history)  # the records hold NaNs: compare their text


# ---- the exposed attention ----


def _logits_equal(model, ids, **forward):
    reference = model(ids, **forward)
    adapter = adapter_for(model) if hasattr(model, "lm_head") else None
    with exposed_attention(model):
        if adapter is None:
            exposed = model(ids, **forward)
        else:  # hooks on, injection off: nothing may change
            off = FaultInjector(InjectionConfig("scores", 0, (30,), enabled=False))
            with installed(adapter, off), BoundsDetector(adapter).installed(), ChecksumDetector(adapter).installed():
                exposed = model(ids, **forward)
    key = "logits" if hasattr(reference, "logits") else "last_hidden_state"
    want = getattr(reference, key)
    # float32 rounding of SDPA's fused kernel vs the eager steps, over up to 30 layers: ~1e-5 of the scale.
    torch.testing.assert_close(getattr(exposed, key), want, atol=1e-5 * float(want.abs().max()), rtol=1e-4)


@pytest.mark.parametrize("family", ["gpt2", "llama-gqa"])
def test_exposed_attention_reproduces_the_logits_toy(family):
    _logits_equal((toy_gpt2 if family == "gpt2" else toy_llama)(), IDS)


@pytest.mark.parametrize("key", ["gpt2-random", "smollm2-135m"])
def test_exposed_attention_reproduces_the_logits_real(key):
    from repro.models import ModelUnavailable, load_model

    try:
        lm = load_model(key)
    except ModelUnavailable as err:
        pytest.skip(str(err))
    _logits_equal(lm.model, IDS * 40)
    assert lm.model.config._attn_implementation != "repro_exposed"  # restored


def test_exposed_attention_bidirectional_distilbert():
    """DistilBERT (random init, small): the attention function handles its bidirectional and padding masks
    (the adapter, and so the hook mechanism, covers the causal GPT-2 and LLaMA families only)."""
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(0)
    model = DistilBertModel(DistilBertConfig(n_layers=2, n_heads=4, dim=64, hidden_dim=128, vocab_size=500)).eval()
    mask = torch.ones_like(IDS)
    mask[1, -3:] = 0  # padding in the second sequence
    with torch.no_grad():
        _logits_equal(model, IDS)
        _logits_equal(model, IDS, attention_mask=mask)


def test_attention_sites_have_transformerlens_shapes():
    model = toy_llama()
    adapter = adapter_for(model)
    names = [hooks.attn_q(1), hooks.attn_k(1), hooks.attn_v(1), hooks.attn_scores(1), hooks.attn_pattern(1)]
    with hooks.caching(adapter, names) as cache:
        adapter.forward(IDS)
    assert cache[hooks.attn_q(1)].shape == (2, 9, 4, 16)
    assert cache[hooks.attn_k(1)].shape == (2, 9, 2, 16)  # grouped-query: kv heads
    assert cache[hooks.attn_pattern(1)].shape == (2, 4, 9, 9)
    torch.testing.assert_close(cache[hooks.attn_pattern(1)].sum(-1), torch.ones(2, 4, 9))


# ---- bounds and detection ----


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), log_scale=st.floats(-3, 1.5), n_q=st.integers(1, 12), extra=st.integers(0, 4),
       causal=st.booleans(), groups=st.sampled_from([1, 2]), dtype=st.sampled_from(["float32", "bfloat16", "float16"]))
def test_every_bound_and_checksum_holds_on_clean_attention(seed, log_scale, n_q, extra, causal, groups, dtype):
    """Random q, k, v at any scale, causal or not, grouped or not, padded, in three dtypes: no check fires."""
    dtype = getattr(torch, dtype)
    g = torch.Generator().manual_seed(seed)
    n_k = n_q + extra if causal else n_q
    d, kv = 8, 2
    q = (torch.randn(2, kv * groups, n_q, d, generator=g) * 10**log_scale).to(dtype)
    k = (torch.randn(2, kv, n_k, d, generator=g) * 10**log_scale * torch.rand(1, 1, n_k, 1, generator=g)).to(dtype)
    v = (torch.randn(2, kv, n_k, d, generator=g) * 10**log_scale).to(dtype)
    module = torch.nn.Module()
    module.is_causal, module.training = causal, False
    allowed = torch.ones(2, 1, n_q, n_k, dtype=torch.bool)
    if causal:
        allowed &= torch.ones(n_q, n_k, dtype=torch.bool).tril(n_k - n_q)
    allowed[1, ..., : min(extra, n_k - 1)] = False  # padding: the first keys of the second sequence
    mask = torch.where(allowed, 0.0, torch.finfo(dtype).min).to(dtype)
    sites = {}
    module._repro_attention_hooks = {slot: [lambda a, slot=slot: sites.__setitem__(slot, a.detach())]
                                     for slot in ("mask", "scores", "pattern", "z_checksum")}
    out, _ = exposed_attention_forward(module, q, k, v, mask, scaling=d**-0.5)
    scores, pattern = sites["scores"].float(), sites["pattern"].float()
    qf, kf, vf, z = q.float(), k.float(), v.float(), out.transpose(1, 2).float()
    keys, values = kf.repeat_interleave(groups, 1), vf.repeat_interleave(groups, 1)
    precision = Precision(dtype)
    visible = sites["mask"]
    n = visible.sum(-1, dtype=torch.float32)
    live = n > 0
    uses = {
        "cauchy_schwarz": bounds.cauchy_schwarz_use(qf, keys, scores, d**-0.5, visible, precision),
        "row_sum": bounds.row_sum_use(pattern, n, live, precision),
        "softmax_interval": bounds.softmax_interval_use(scores, pattern, visible, n, live, precision),
        "lambert_gap": bounds.lambert_gap_use(scores, pattern, visible, n, live, precision),
        "output_range": bounds.output_range_use(z, values, visible, n, live, precision, causal=causal),
        "finite": bounds.finite_use(qf, keys, values, scores, pattern, z, visible, live),
        **checksum_uses(qf, kf, vf, scores, pattern, z, sites["z_checksum"].float(), visible, d**-0.5, precision,
                        causal=causal, half_masked=dtype != torch.float32),
    }
    for check, use in uses.items():
        assert (use <= 1).all(), (check, use)


def test_lambert_gap_bound_is_attained():
    # n - 1 keys at gap W0((n-1)/e) + 1 below the top one give exactly the bound.
    n = 50
    w = float(bounds.lambert_gap_bound(n))
    scores = torch.tensor([0.0] + [-(w + 1)] * (n - 1), dtype=torch.float64)
    p = scores.softmax(0)
    assert float((p * (scores.max() - scores)).sum()) == pytest.approx(w, rel=1e-9)
    assert bounds.kim_lipschitz_term(n) == pytest.approx(4 * w + 1)


@pytest.mark.parametrize("family", ["gpt2", "llama-gqa"])
def test_envelopes_hold_for_any_residual_stream(family):
    model = (toy_gpt2 if family == "gpt2" else toy_llama)()
    adapter = adapter_for(model)
    detector = BoundsDetector(adapter)
    with detector.installed():
        for scale in (1e-3, 1.0, 1e3):
            hidden = torch.randn(2, 9, adapter.d_model) * scale
            adapter.run_blocks(hidden)
    assert not detector.flagged().any(), [c.use for c in detector.calls if c.flagged().any()]


def _distilbert():
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    torch.manual_seed(0)
    config = DistilBertConfig(n_layers=2, n_heads=4, dim=64, hidden_dim=128, vocab_size=500)
    return DistilBertForMaskedLM(config).eval().requires_grad_(False)


FAMILIES = {"gpt2": toy_gpt2, "llama-gqa": toy_llama, "distilbert": _distilbert}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_no_clean_call_raises_an_alarm_in_any_dtype(dtype):
    """>= 150 clean calls per dtype and detector (toy GPT-2, LLaMA with GQA, DistilBERT), left- and
    right-padded batches included: zero alarms (the issue's fp16 false alarms came from float32 masks)."""
    g = torch.Generator().manual_seed(11)
    calls = {"bounds": 0, "checksum": 0}
    for family, make in FAMILIES.items():
        model = make().to(dtype)
        adapter = adapter_for(model)
        detectors = [BoundsDetector(adapter), ChecksumDetector(adapter)]
        with torch.no_grad(), detectors[0].installed(), detectors[1].installed():
            for trial in range(8):
                ids = torch.randint(0, 500, (3, 10), generator=g)
                mask = torch.ones_like(ids)
                mask[1, :4] = 0  # left padding
                mask[2, -3:] = 0  # right padding
                model(ids, attention_mask=mask if trial % 2 else None)
        for detector in detectors:
            flagged = [c.flagged() for c in detector.calls]
            calls[detector.name] += sum(len(f) for f in flagged)
            worst = {ch: max(float(c.use[ch].max()) for c in detector.calls) for ch in detector.CHECKS}
            assert not any(f.any() for f in flagged), (family, detector.name, worst)
    assert min(calls.values()) >= 150, calls


def _planted(family, location, index, bits, detectors=("bounds", "checksum")):
    model = FAMILIES[family]()
    adapter = adapter_for(model)
    injector = FaultInjector(InjectionConfig(location, 1, bits, index=index))
    watching = {"bounds": BoundsDetector(adapter), "checksum": ChecksumDetector(adapter)}
    with torch.no_grad(), installed(adapter, injector), watching["bounds"].installed(), \
            watching["checksum"].installed():
        adapter.forward(IDS)
    return injector.history[0], {name: d.flagged().tolist() for name, d in watching.items()}


@pytest.mark.parametrize("location", ["scores", "weights", "out"])
@pytest.mark.parametrize("family", ["gpt2", "llama-gqa", "distilbert"])
def test_a_planted_exponent_flip_is_detected(location, family):
    index = {"scores": (0, 1, 5, 2), "weights": (0, 1, 5, 2), "out": (0, 5, 1, 3)}[location]
    record, flagged = _planted(family, location, index, (30,))
    assert abs(record.after) > 1e30 or not np.isfinite(record.after), record  # a small value made huge
    assert flagged == {"bounds": [True, False], "checksum": [True, False]}  # the faulty sequence only


def test_a_sign_flip_of_the_largest_score_escapes_the_bounds_but_not_the_checksum():
    """Consistent with every bound (the softmax follows the flipped score), yet the row sum of the scores no
    longer equals scale * q . (sum of visible keys)."""
    model = toy_llama()
    adapter = adapter_for(model)
    with hooks.caching(adapter, [hooks.attn_scores(1)]) as cache:
        adapter.forward(IDS)
    row = cache[hooks.attn_scores(1)][0, 1, 8]  # head 1, last query: sees all 9 keys
    record, flagged = _planted("llama-gqa", "scores", (0, 1, 8, int(row.argmax())), (31,))
    assert record.after == -record.before
    assert flagged == {"bounds": [False, False], "checksum": [True, False]}


def test_a_masked_score_made_visible_is_caught_by_the_weights_sums():
    # Query 2 may not see key 6; an exponent bit of its mask value flipped makes it an ordinary score.
    record, flagged = _planted("gpt2", "scores", (0, 1, 2, 6), (30,))
    assert abs(record.after) < 10
    assert flagged["checksum"] == [True, False] and flagged["bounds"] == [True, False]


# ---- strata and harm ----


@pytest.mark.parametrize("stratum", ["uniform", "exp_up", "sign_sink", "sign_argmax", "top2", "masked"])
def test_each_stratum_draws_members_of_its_cell(stratum):
    import random

    from repro.sdc import strata

    g = torch.Generator().manual_seed(0)
    vectors = torch.randn(1, 6, 2, 8, generator=g)  # [1, pos, head, d]
    visible = torch.ones(6, 6, dtype=torch.bool).tril()[None, None]
    scores = torch.where(visible, torch.randn(1, 2, 6, 6, generator=g), torch.finfo(torch.float32).min)
    rng = random.Random(1)
    for location in strata.LOCATIONS[stratum]:
        x = scores if location == "scores" else scores.softmax(-1) if location == "weights" else vectors
        for _ in range(20):
            bits = (rng.randrange(32),) if stratum == "uniform" else ()
            index, bits = strata.choose(stratum, location, x, visible, rng, bits)
            cell = strata.cell(location, index, bits, x, visible)
            assert stratum == "uniform" or cell == stratum, (location, index, bits, cell)
            if stratum == "exp_up":
                assert not abs(float(flip_bits(x, index, bits)[index])) <= abs(float(x[index]))  # upward (or NaN)
    assert strata.upward_bits(1.0, torch.float32) == [30]  # 1.0 = 2^0: biased exponent 0b01111111


def test_harm_needs_a_confident_change_or_a_kl_above_the_threshold():
    from repro.sdc.experiments import KL_HARM, Baseline, harm

    logits = torch.tensor([[4.0, 0.0, 0.0], [0.1, 0.0, 0.0]])  # position 0 confident, position 1 a near tie
    base = Baseline(torch.tensor([0, 1]), [], [], logits, 0.0)
    tie_flip = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.1, 0.0]])  # top-1 changes only where it was a near tie
    nan = logits.clone()
    nan[1, 2] = float("nan")
    rows = harm(torch.stack([logits, tie_flip, logits.flip(-1), nan]), base)
    assert [r["harmful"] for r in rows] == [False, False, True, True]
    assert rows[1]["top1_changed"] == 1 and rows[1]["top1_confident_changed"] == 0 and rows[1]["kl_max"] < KL_HARM
    assert rows[2]["top1_confident_changed"] == 1 and rows[3]["nonfinite"] and rows[3]["kl_max"] is None


def test_the_rule_decides_from_intervals_and_gates():
    from repro.intervals import binomial_estimate
    from repro.sdc.verdict import sdc_ruling
    from repro.verdicts import Verdict

    clean = binomial_estimate(0, 1000, units="calls")
    recall = lambda k, n: binomial_estimate(k, n, units="faults")  # noqa: E731
    assert sdc_ruling(recall(400, 400), clean).verdict == Verdict.REPRODUCED  # lower bound 0.991
    assert sdc_ruling(recall(300, 400), clean).verdict == Verdict.NOT_REPRODUCED  # upper bound 0.79
    assert sdc_ruling(recall(370, 400), clean).verdict == Verdict.INCONCLUSIVE  # [0.90, 0.95]
    few = sdc_ruling(recall(60, 60), clean)
    assert few.verdict == Verdict.INCONCLUSIVE and "non-trivial harmful faults" in few.decided_by
    alarms = sdc_ruling(recall(400, 400), binomial_estimate(30, 1000, units="calls"))
    assert alarms.verdict == Verdict.INCONCLUSIVE


# ---- the sweep and its results log ----


def _toy_lm():
    from toy_models import as_loaded

    return as_loaded(toy_gpt2(), "toy-gpt2")


TOY_WINDOWS = torch.randint(0, 500, (2, 8), generator=torch.Generator().manual_seed(5))


def toy_spec(**overrides):
    from repro.sdc.runner import RunSpec

    return RunSpec(**{"model": "toy-gpt2", "profile": "test", "device": "cpu", "dtype": "float32", "window_len": 8,
                      "n_windows": 2, "loader": _toy_lm, "windows": TOY_WINDOWS, **overrides})


TOY_SWEEP = ParameterSweepConfig("t", n_windows=2, strata=(("uniform", 6), ("exp_up", 4), ("sign_argmax", 3),
                                                           ("top2", 3), ("masked", 2)))


def _toy_sweep(folder, order=1, stop_after=None, spec=None):
    from repro.sdc.runner import FaultRunner

    spec = spec or toy_spec()
    runner = FaultRunner(spec)
    configs = TOY_SWEEP.configs(runner.lm.adapter.n_layers)[::order]
    batches = []

    def run_batch(chunk):
        if stop_after is not None and len(batches) == stop_after:
            raise KeyboardInterrupt
        batches.append([c.id for c in chunk])
        return runner.run(chunk)

    return run_sweep(run_batch, configs, ResultsLog(folder, spec.log_settings()), batch_size=2,
                     progress=False), batches


def test_sweep_resumes_after_interruption_and_ignores_order(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _toy_sweep(tmp_path / "a", stop_after=3)
    first = sorted(p.stem for p in (tmp_path / "a").glob("*-*.json"))
    resumed, rerun = _toy_sweep(tmp_path / "a")
    assert first and not set(first) & {c for chunk in rerun for c in chunk}  # nothing repeated
    straight, _ = _toy_sweep(tmp_path / "b", order=-1)
    assert len(resumed) == 18 and resumed == straight  # nothing lost; order does not matter
    assert {f["stratum"] for f in resumed} == {"uniform", "exp_up", "sign_argmax", "top2", "masked"}
    assert all(f["model"] == "toy-gpt2" and f["window_len"] == 8 and f["code"] for f in resumed)


def test_a_log_of_other_settings_is_refused_or_started_over(tmp_path):
    from repro.readers import InputError
    from repro.sdc.sweeps import LogMismatch

    _toy_sweep(tmp_path)
    with pytest.raises(LogMismatch, match=r"window_len 8 \(now 9\).*--fresh-log") as err:
        ResultsLog(tmp_path, toy_spec(window_len=9).log_settings())
    assert "\n" not in str(err.value)
    fresh = ResultsLog(tmp_path, toy_spec(window_len=9).log_settings(), fresh=True)
    assert len(fresh) == 0 and len(list(tmp_path.glob("*.json"))) == 1  # only the new settings
    (tmp_path / "notes").mkdir()
    (tmp_path.parent / "other").mkdir()
    (tmp_path.parent / "other" / "thesis.tex").write_text("x")
    with pytest.raises(LogMismatch, match="not a results log"):
        ResultsLog(tmp_path.parent / "other", toy_spec().log_settings())
    # A truncated entry names its file.
    _toy_sweep(tmp_path / "c")
    entry = sorted((tmp_path / "c").glob("*-*.json"))[0]
    entry.write_text(entry.read_text()[:40])
    with pytest.raises(InputError, match=entry.name):
        _toy_sweep(tmp_path / "c")


def test_sweep_configs_save_and_load(tmp_path):
    sweep = template("bit_sweep")
    assert len(sweep.configs(12)) == 768
    assert ParameterSweepConfig.load(sweep.save(tmp_path / "s.json")) == sweep
    assert ParameterSweepConfig.load(TOY_SWEEP.save(tmp_path / "t.json")) == TOY_SWEEP
    stratified = template("stratified")
    counts = {s: n for s, n in stratified.strata}
    configs = stratified.configs(30)
    assert len(configs) == sum(counts.values()) and {c.stratum for c in configs} == set(counts)
    assert "masked" not in {c.stratum for c in stratified.configs(30, bidirectional=True)}


@pytest.mark.parametrize("content, words", [
    ("[1, 2]", ["must be an object", "got a list"]),
    ('{"bits": [40]}', ["Bit 40 is out of range for float32"]),
    ('{"bits": "abc"}', ["field 'bits' must be a list"]),
    ('{"bits": [1], "strata": {"nope": 3}}', ["Unknown stratum"]),
    ('{"bits": [1], "colour": 3}', ["unknown field(s) ['colour']"]),
])
def test_a_bad_sweep_file_is_one_line_and_exit_2_before_any_model(content, words, tmp_path, capsys, monkeypatch):
    import repro.sdc.cli as cli

    monkeypatch.setattr(cli, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    path = tmp_path / "sweep.json"
    path.write_text(content)
    assert cli.main(["--sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and "Traceback" not in err
    for word in words:
        assert word in err
    assert not (tmp_path / "out").exists()


def test_the_attention_module_imports_nothing_of_the_suite():
    """The exposed attention is a leaf: repro.hooks imports it, never the other way round (no cycle)."""
    import ast
    from pathlib import Path

    import repro.attention

    tree = ast.parse(Path(repro.attention.__file__).read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith("repro")]


def test_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path, capsys, monkeypatch):
    import repro.sdc.cli as cli
    import repro.sdc.run as run

    def interrupted(lm, profile, out, *, log_dir, **kwargs):
        log = ResultsLog(log_dir, toy_spec().log_settings())
        log.write(TOY_SWEEP.configs(3)[0], {"harmful": False})
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load_model", lambda *a, **k: _toy_lm())
    monkeypatch.setattr(run, "run_sdc", interrupted)
    assert cli.main(["--sweep", "smoke", "--out", str(tmp_path / "out"), "--quiet"]) == 130
    err = capsys.readouterr().err.strip()
    assert "the 1 finished faults are kept" in err and "rerun the same command to resume" in err
    assert err.count("\n") == 0 and not (tmp_path / "out").exists()

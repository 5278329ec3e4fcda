"""Claim 4's parts: bit flips, the exposed attention, the bounds, detection, and the resumable sweep."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from toy_models import toy_gpt2, toy_llama

from repro import hooks
from repro.adapters import adapter_for
from repro.sdc import bounds
from repro.sdc.attention import exposed_attention, exposed_attention_forward
from repro.sdc.detection import Detector
from repro.sdc.experiments import clean_runs, run_faults
from repro.sdc.injection import FaultInjector, InjectionConfig, bit_class, flip_bits, installed
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
    (dict(bits=()), "at least one bit"),
])
def test_bad_configs_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InjectionConfig(**{"location": "q", "layer": 0, "bits": (3,), **kwargs})


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
            with installed(adapter, off), Detector(adapter).installed():
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
       causal=st.booleans(), groups=st.sampled_from([1, 2]))
def test_every_bound_holds_on_clean_attention(seed, log_scale, n_q, extra, causal, groups):
    g = torch.Generator().manual_seed(seed)
    n_k = n_q + extra if causal else n_q
    d, kv = 8, 2
    q = torch.randn(2, kv * groups, n_q, d, generator=g) * 10**log_scale
    k = torch.randn(2, kv, n_k, d, generator=g) * 10**log_scale * torch.rand(1, 1, n_k, 1, generator=g)
    v = torch.randn(2, kv, n_k, d, generator=g) * 10**log_scale
    module = torch.nn.Module()
    module.is_causal, module.training = causal, False
    mask = None
    if not causal:  # padding: the last keys of the second sequence
        mask = torch.zeros(2, 1, n_q, n_k)
        mask[1, :, :, n_k - min(extra, n_k - 1):] = torch.finfo(torch.float32).min
    sites = {}
    module._repro_attention_hooks = {s: [(s, lambda a, name: sites.__setitem__(name, a.detach()))]
                                     for s in hooks.ATTENTION_SITES}
    out, _ = exposed_attention_forward(module, q, k, v, mask, scaling=d**-0.5)
    scores, pattern = sites[hooks.ATTN_SCORES], sites[hooks.ATTN_PATTERN]
    keys, values = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    u = bounds.unit_roundoff(torch.float32)
    if causal:
        visible = torch.ones(n_q, n_k, dtype=torch.bool).tril(n_k - n_q)
    else:
        visible = scores > torch.finfo(torch.float32).min / 2
    n = visible.sum(-1).float()
    z = out.transpose(1, 2)
    uses = {
        "cauchy_schwarz": bounds.cauchy_schwarz_use(q, keys, scores, d**-0.5, visible, u),
        "row_sum": bounds.row_sum_use(pattern, n, u),
        "softmax_interval": bounds.softmax_interval_use(scores, pattern, visible, n, u),
        "lambert_gap": bounds.lambert_gap_use(scores, pattern, visible, n, u),
        "output_range": bounds.output_range_use(z, values, visible, n, u, causal=causal),
        "finite": bounds.finite_use(q, k, v, scores, pattern, z),
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
    detector = Detector(adapter)
    with detector.installed():
        for scale in (1e-3, 1.0, 1e3):
            hidden = torch.randn(2, 9, adapter.d_model) * scale
            adapter.run_blocks(hidden)
    assert not detector.flagged().any(), [c.use for c in detector.calls if c.flagged().any()]


@pytest.mark.parametrize("location", ["scores", "weights", "out"])
@pytest.mark.parametrize("family", ["gpt2", "llama-gqa"])
def test_a_planted_exponent_flip_is_detected(location, family):
    model = (toy_gpt2 if family == "gpt2" else toy_llama)()
    adapter = adapter_for(model)
    index = {"scores": (0, 1, 5, 2), "weights": (0, 1, 5, 2), "out": (0, 5, 1, 3)}[location]
    injector = FaultInjector(InjectionConfig(location, 1, (30,), index=index))
    detector = Detector(adapter)
    with installed(adapter, injector), detector.installed():
        adapter.forward(IDS)
    record = injector.history[0]
    assert abs(record.after) > 1e30 or not np.isfinite(record.after), record  # a small value made huge
    assert detector.flagged().tolist() == [True, False]  # the faulty sequence only


# ---- the sweep ----


def _toy_sweep(tmp_path, order=1, stop_after=None):
    model = toy_gpt2()
    adapter = adapter_for(model)
    windows = torch.randint(0, 500, (2, 8), generator=torch.Generator().manual_seed(5))
    with torch.no_grad(), exposed_attention(model):
        baselines, _ = clean_runs(adapter, windows)
        sweep = ParameterSweepConfig("t", bits=(2, 30, 31), locations=("q", "scores", "out"), seeds=(0, 1),
                                     n_windows=2)
        configs = sweep.configs(adapter.n_layers)[::order]
        batches = []

        def run_batch(chunk):
            if stop_after is not None and len(batches) == stop_after:
                raise KeyboardInterrupt
            batches.append([c.id for c in chunk])
            return run_faults(adapter, baselines[chunk[0].window], [c.injection() for c in chunk], chunk[0].layer,
                              chunk[0].window)

        return run_sweep(run_batch, configs, ResultsLog(tmp_path), batch_size=4, progress=False), batches


def test_sweep_resumes_after_interruption_and_ignores_order(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _toy_sweep(tmp_path / "a", stop_after=3)
    first = sorted(p.stem for p in (tmp_path / "a").glob("*.json"))
    resumed, rerun = _toy_sweep(tmp_path / "a")
    assert first and not set(first) & {c for chunk in rerun for c in chunk}  # nothing repeated
    straight, _ = _toy_sweep(tmp_path / "b", order=-1)
    assert len(resumed) == 18 and resumed == straight  # nothing lost; order does not matter


def test_sweep_configs_save_and_load(tmp_path):
    sweep = template("bit_sweep")
    assert len(sweep.configs(12)) == 768
    assert ParameterSweepConfig.load(sweep.save(tmp_path / "s.json")) == sweep

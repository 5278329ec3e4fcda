"""Exact patching agrees with brute-force full forwards; attribution is its first-order approximation;
the filter fails loudly; the pipeline, the writer and the CLI run end to end on a tiny model."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from toy_models import as_loaded, toy_gpt2

from repro import hooks
from repro.ioi import cli
from repro.ioi.attribution import head_attributions
from repro.ioi.collect import collect
from repro.ioi.dataset import MAX_PAIRS, IOIPair, generate_pairs, tokenize_pairs
from repro.ioi.filtering import NoPairsLeft, filter_pairs, final_logit_diff
from repro.ioi.metric import logit_diff_from_logits
from repro.ioi.pairs_file import save_pairs
from repro.ioi.patching import head_patched_ld, layer_patched_ld, naive_head_patched_ld, resid_patched_ld
from repro.ioi.result import write_results
from repro.ioi.run import head_effect_matrix, run_ioi
from repro.models import gpt2_tokenizer, load_model
from repro.profiles import IOISettings, get_profile
from repro.verdicts import ClaimResult, Verdict


@pytest.fixture(scope="module")
def tiny():
    """3 layers, 4 heads, d_model 64, the real GPT-2 tokenizer; float64 so derivative checks are crisp."""
    model = toy_gpt2(vocab_size=50257, initializer_range=0.2).double()
    return as_loaded(model, "tiny-gpt2", gpt2_tokenizer())


@pytest.fixture(scope="module")
def tiny_pairs(tiny):
    """Pairs a random model 'answers': for each generated pair whose S2 swap flips the random model's
    preference, the name it prefers on the clean prompt is named IO. The filter must keep exactly these."""
    pairs = generate_pairs(tiny.tokenizer, 100, seed=7)
    ld = {}
    for batch in tokenize_pairs(tiny.tokenizer, pairs):
        clean, corrupted = (
            final_logit_diff(tiny.adapter, batch.clean, batch.io, batch.s),
            final_logit_diff(tiny.adapter, batch.corrupted, batch.io, batch.s),
        )
        ld.update({i: (float(c), float(x)) for i, c, x in zip(batch.index, clean, corrupted, strict=True)})
    oriented = []
    for i, p in enumerate(pairs):
        c, x = ld[i]
        if c * x < 0:
            oriented.append(
                p if c > 0 else IOIPair(p.clean, p.corrupted, p.s, p.io, p.corruption, p.template, p.order)
            )
    assert len(oriented) >= 6
    return oriented


@pytest.fixture(scope="module")
def tiny_batch(tiny):
    batches = tokenize_pairs(tiny.tokenizer, generate_pairs(tiny.tokenizer, 8, seed=1))
    batch = max(batches, key=lambda b: b.size)
    clean = collect(tiny.adapter, batch.clean, batch.io, batch.s)
    corrupted = collect(tiny.adapter, batch.corrupted, batch.io, batch.s)
    return batch, clean, corrupted


def full_forward_ld(loaded, batch, patches):
    with torch.no_grad(), hooks.patching(loaded.adapter, patches):
        return logit_diff_from_logits(loaded.model(batch.corrupted).logits, batch.io, batch.s)


def test_exact_head_patching_matches_naive_on_gpt2_random():
    loaded = load_model("gpt2-random")
    batch = tokenize_pairs(loaded.tokenizer, generate_pairs(loaded.tokenizer, 2))[0]
    clean = collect(loaded.adapter, batch.clean, batch.io, batch.s)
    corrupted = collect(loaded.adapter, batch.corrupted, batch.io, batch.s)
    exact = head_patched_ld(loaded.adapter, batch, clean, corrupted, final_only=False)
    layers = [0, 11]  # a subset: the naive baseline is one full forward per head
    naive = naive_head_patched_ld(loaded.adapter, batch, clean, layers=layers)
    assert torch.isnan(naive[1]).all()
    assert (exact[layers] - naive[layers]).abs().max() <= 1e-4
    # and patching does something: not every head leaves the corrupted logit diff unchanged
    assert (exact - corrupted.logit_diff).abs().max() > 1e-4


def test_every_granularity_matches_full_forward_patching(tiny, tiny_batch):
    batch, clean, corrupted = tiny_batch
    adapter = tiny.adapter
    heads = head_patched_ld(adapter, batch, clean, corrupted, final_only=False)
    final = head_patched_ld(adapter, batch, clean, corrupted, final_only=True)
    attn = layer_patched_ld(adapter, batch, clean, corrupted, hooks.ATTN_OUT)
    mlp = layer_patched_ld(adapter, batch, clean, corrupted, hooks.MLP_OUT)
    resid = resid_patched_ld(adapter, batch, clean, corrupted)
    for layer in range(adapter.n_layers):
        for head in range(adapter.n_heads):

            def all_pos(z, layer=layer, head=head):
                z = z.clone()
                z[:, :, head] = clean.z[layer][:, :, head]
                return z

            def last_pos(z, layer=layer, head=head):
                z = z.clone()
                z[:, -1, head] = clean.z[layer][:, -1, head]
                return z

            assert torch.allclose(
                heads[layer, head], full_forward_ld(tiny, batch, {hooks.attn_z(layer): all_pos}), atol=1e-9
            )
            assert torch.allclose(
                final[layer, head], full_forward_ld(tiny, batch, {hooks.attn_z(layer): last_pos}), atol=1e-9
            )
        assert torch.allclose(
            attn[layer],
            full_forward_ld(tiny, batch, {hooks.attn_out(layer): clean.attn_out[layer]}),
            atol=1e-9,
        )
        assert torch.allclose(
            mlp[layer], full_forward_ld(tiny, batch, {hooks.mlp_out(layer): clean.mlp_out[layer]}), atol=1e-9
        )
        for pos in range(batch.n_pos):

            def one_pos(h, layer=layer, pos=pos):
                h = h.clone()
                h[:, pos] = clean.resid_pre[layer][:, pos]
                return h

            assert torch.allclose(
                resid[layer, pos], full_forward_ld(tiny, batch, {hooks.resid_pre(layer): one_pos}), atol=1e-9
            )
    # before the first differing token nothing changes, exactly
    assert (resid[:, : batch.first_difference()] == corrupted.logit_diff).all()


def test_attribution_is_the_derivative_of_exact_patching(tiny, tiny_batch):
    """Patching z <- corr + eps * (clean - corr): (patched - corr) / eps -> attribution as eps -> 0, with
    an error that shrinks linearly in eps (the Taylor remainder is second order)."""
    batch, clean, corrupted = tiny_batch
    estimate, _ = head_attributions(tiny.adapter, batch, clean)  # [layer, head, batch]
    errors = {}
    for eps in (1e-2, 1e-3):
        worst = 0.0
        for layer, head in [(0, 1), (1, 2), (2, 3)]:

            def nudged(z, layer=layer, head=head, eps=eps):
                z = z.clone()
                z[:, :, head] += eps * (clean.z[layer][:, :, head] - z[:, :, head])
                return z

            slope = (full_forward_ld(tiny, batch, {hooks.attn_z(layer): nudged}) - corrupted.logit_diff) / eps
            worst = max(worst, float((slope - estimate[layer, head]).abs().max()))
        errors[eps] = worst
    scale = float(estimate.abs().max())
    assert errors[1e-3] < 1e-3 * scale
    assert errors[1e-3] < errors[1e-2] / 5


def test_attribution_tracks_exact_patching_and_respects_causality(tiny, tiny_batch):
    batch, clean, corrupted = tiny_batch
    exact = head_patched_ld(tiny.adapter, batch, clean, corrupted, final_only=False) - corrupted.logit_diff
    exact_final = (
        head_patched_ld(tiny.adapter, batch, clean, corrupted, final_only=True) - corrupted.logit_diff
    )
    estimate, estimate_final = head_attributions(tiny.adapter, batch, clean)
    assert spearmanr(exact.mean(-1).ravel(), estimate.mean(-1).ravel())[0] > 0.8
    # in the last layer only the final position can reach the logits: all-position == final-position,
    # for exact patching and for attribution alike (their gradients elsewhere are exactly zero)
    last = tiny.adapter.n_layers - 1
    assert torch.allclose(exact[last], exact_final[last], atol=1e-12)
    assert torch.allclose(estimate[last], estimate_final[last], atol=1e-12)


def test_filter_keeps_correct_pairs_and_fails_loudly_when_none_are(tiny, tiny_pairs):
    pairs = generate_pairs(tiny.tokenizer, 100, seed=7)
    result = filter_pairs(tiny.adapter, tokenize_pairs(tiny.tokenizer, pairs), pairs, "tiny")
    assert result.n_total == 100 and result.n_kept + sum(result.drop_reasons.values()) == 100
    kept = {pairs[i] for batch in result.batches for i in batch.index}
    assert kept == set(tiny_pairs) & set(pairs)  # the ones not re-oriented
    for batch in result.batches:
        for i in batch.index:
            assert result.clean_ld[i] > 0 > result.corrupted_ld[i]
    # name as the answer the name the model does *not* prefer: now no pair is right
    flipped = [IOIPair(p.clean, p.corrupted, p.s, p.io) for p in tiny_pairs]
    with pytest.raises(
        NoPairsLeft,
        match=rf"tiny: all {len(flipped)} IOI pairs were filtered out .*clean prompt does not prefer IO",
    ):
        filter_pairs(tiny.adapter, tokenize_pairs(tiny.tokenizer, flipped), flipped, "tiny")


def test_head_effect_matrix_on_explicit_pairs(tiny):
    pairs = [(p.clean, p.corrupted, p.io, p.s) for p in generate_pairs(tiny.tokenizer, 6, seed=5)]
    effects = head_effect_matrix(tiny, pairs)
    assert effects.shape == (3, 4) and np.isfinite(effects).all() and np.abs(effects).max() > 0
    assert not np.allclose(effects, head_effect_matrix(tiny, pairs, final_only=True))


def test_run_ioi_writes_figures_results_and_stable_snapshot(tiny, tiny_pairs, tmp_path):
    profile = replace(get_profile("cpu"), ioi=IOISettings(n_pairs=len(tiny_pairs), pair_seed=0))
    result = run_ioi(tiny, profile, tmp_path, pairs=tiny_pairs, progress=False)
    assert isinstance(result, ClaimResult)
    assert result.n_kept == len(tiny_pairs) and result.heads.shape == (3, 4) and result.resid.shape[0] == 3
    assert len(result.resid_tokens) == result.resid.shape[1] and result.resid_n_pairs >= 1
    assert isinstance(result.ruling.verdict, Verdict) and result.measurement().verdict is result.ruling.verdict
    # the exact per-pair head matrix the bootstrap resamples averages to the reported effects
    assert result.estimates["band share"].value == pytest.approx(result.criteria.band_share)
    assert sorted(p.name for p in result.figures.values()) == sorted(
        f"tiny-gpt2-ioi-{name}.png"
        for name in ("attribution-scatter", "heatmap", "heatmap-final-pos", "layer-bars", "resid-map")
    )
    for path in result.figures.values():
        assert path.is_file() and path.stat().st_size > 1000
    assert np.isclose(result.layer_shares.sum(), 1.0)
    again = run_ioi(tiny, profile, tmp_path / "again", pairs=tiny_pairs, progress=False)
    assert again.snapshot() == result.snapshot()
    json.dumps(result.snapshot())  # plain JSON types only
    written = write_results(result, tmp_path / "out")
    summary = json.loads(written["json"].read_text())
    assert summary["ruling"]["verdict"] == result.ruling.verdict.value
    assert summary["settings"]["pair_seed"] == 0
    assert np.array_equal(np.load(written["heads"]), result.heads)


def test_cli_reads_pairs_writes_results_and_reports_unusable_inputs(
    tiny, tiny_pairs, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(cli, "load_model", lambda key, device, dtype: tiny)
    pairs = save_pairs(tiny_pairs, tmp_path / "pairs.json")
    out = tmp_path / "out"
    assert cli.main(["--pairs", str(pairs), "--out", str(out), "--quiet"]) == 0
    assert (out / "tiny-gpt2-ioi-effects.json").is_file() and (out / "tiny-gpt2-ioi-heatmap.png").is_file()
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert cli.main(["--pairs", str(bad), "--out", str(out)]) == 2
    assert "expected a non-empty JSON list" in capsys.readouterr().err
    # generated pairs the random model gets wrong: the filter's error, not a traceback, and the
    # previous run's output is left as it was
    assert cli.main(["--n-pairs", "4", "--pair-seed", "0", "--out", str(out), "--quiet"]) == 2
    assert "IOI pairs were filtered out" in capsys.readouterr().err
    assert (out / "tiny-gpt2-ioi-effects.json").is_file()


@pytest.mark.parametrize("n_pairs", [0, -5, MAX_PAIRS + 1])
def test_cli_refuses_n_pairs_out_of_range_before_loading_a_model(n_pairs, tmp_path, monkeypatch, capsys):
    def no_model(*args):
        raise AssertionError("the model was loaded before --n-pairs was checked")

    monkeypatch.setattr(cli, "load_model", no_model)
    with pytest.raises(SystemExit) as exit_:  # argparse refuses it, before anything else runs
        cli.main(["--n-pairs", str(n_pairs), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --n-pairs: {n_pairs} is out of range; give 1..{MAX_PAIRS}" in err and err.count("\n") == 1

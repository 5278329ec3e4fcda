"""Unit tests of claim 2's pieces: cloze extraction, GradSim, MEMIT, the statistics, bad inputs."""

import json

import numpy as np
import pytest
import torch
from toy_models import as_loaded, toy_gpt2, toy_llama

from repro import hooks
from repro.gradsim.correlation import PairTable, within_edit_permutation_p
from repro.gradsim.coupling import gradsim_matrix, gradsim_matrix_loop
from repro.gradsim.memit import (
    EditRequest,
    MemitHyperParams,
    applied,
    closed_form_update,
    edit_layers,
    memit_edit,
)
from repro.gradsim.memit.covariance import second_moments
from repro.gradsim.pieces import PieceError, cloze_pieces, read_hotpot_file
from repro.gradsim.scoring import PieceBatch, score

EXAMPLE = {
    "_id": "toy1",
    "type": "bridge",
    "question": "In which country was the founder of Acme Corp born?",
    "answer": "Freedonia",
    "supporting_facts": [["Acme Corp", 0], ["Rufus Firefly", 1]],
    "context": [
        ["Acme Corp", ["Acme Corp is a maker of anvils founded by Rufus Firefly in 1921.", " It sells rockets."]],
        ["Rufus Firefly", ["Rufus Firefly was an inventor.", " He was born in Freedonia and died in Sylvania."]],
        ["Distractor", ["Nothing here."]],
    ],
}


def test_cloze_pieces_from_a_handcrafted_example():
    hop1, hop2 = cloze_pieces(EXAMPLE)
    assert (hop1.prompt, hop1.answer, hop1.subject, hop1.hop) == (
        "Acme Corp is a maker of anvils founded by", " Rufus Firefly", "Acme Corp", 1)
    # The answer sentence does not name its paragraph's subject, so the title is prefixed.
    assert (hop2.prompt, hop2.answer, hop2.subject, hop2.hop) == (
        "Rufus Firefly: He was born in", " Freedonia", "Rufus Firefly", 2)
    assert hop1.chain == hop2.chain == "hotpotqa:toy1"
    assert hop1.subject_end == len("Acme Corp")


def test_answer_not_in_supporting_facts_is_an_error():
    with pytest.raises(PieceError, match="answer not in supporting facts"):
        cloze_pieces({**EXAMPLE, "answer": "Atlantis"})
    with pytest.raises(PieceError, match="yes/no"):
        cloze_pieces({**EXAMPLE, "answer": "yes"})


def test_malformed_hotpot_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{not json")
    with pytest.raises(PieceError, match="not valid JSON"):
        read_hotpot_file(bad)
    bad.write_text(json.dumps([{"question": "q"}]))
    with pytest.raises(PieceError, match="lacks"):
        read_hotpot_file(bad)
    bad.write_text(json.dumps([{**EXAMPLE, "supporting_facts": [["Nowhere", 0]]}]))
    with pytest.raises(PieceError, match="not in its context"):
        read_hotpot_file(bad)
    with pytest.raises(PieceError, match="not found"):
        read_hotpot_file(tmp_path / "missing.json")


def _batch(n=5, seed=0, vocab=500) -> PieceBatch:
    """Random prompts of different lengths with 1-3 answer tokens, right-padded."""
    g = torch.Generator().manual_seed(seed)
    rows, pos, ans = [], [], []
    for _ in range(n):
        q = int(torch.randint(3, 8, (1,), generator=g))
        a = int(torch.randint(1, 4, (1,), generator=g))
        ids = torch.randint(0, vocab, (q + a,), generator=g)
        rows.append(ids)
        pos.append(torch.arange(q, q + a))
        ans.append(ids[q:])
    width = max(len(r) for r in rows)
    ids = torch.zeros(n, width, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = row
    return PieceBatch(ids, torch.tensor([len(r) for r in rows]), pos, ans)


@pytest.mark.parametrize("make", [toy_gpt2, toy_llama])
def test_gradsim_is_symmetric_unit_diagonal_and_equals_the_loop(make):
    lm = as_loaded(make(), "toy")
    batch = _batch()
    fast = gradsim_matrix(lm.adapter, batch, layer=1, chunk=2)  # chunks: rows across chunks must meet
    slow = gradsim_matrix_loop(lm.adapter, batch, layer=1)
    assert np.allclose(fast, fast.T, atol=1e-12)
    assert np.allclose(np.diag(fast), 1.0, atol=1e-9)
    assert np.abs(fast - slow).max() <= 1e-5
    assert not lm.model.transformer.h[1].mlp.c_proj.weight.requires_grad if make is toy_gpt2 else True


@pytest.mark.parametrize("make", [toy_gpt2, toy_llama])
def test_down_projection_is_d_out_by_d_in_and_writes_back(make):
    adapter = as_loaded(make(), "toy").adapter
    w = adapter.down_proj_weight(0)
    d_mlp = 4 * 64 if make is toy_gpt2 else 128
    assert tuple(w.shape) == (64, d_mlp)
    ids = torch.randint(0, 500, (2, 6))
    with hooks.caching(adapter, [hooks.mlp_post(0), hooks.mlp_out(0)]) as cache:
        adapter.forward(ids)
    bias = adapter.mlp_down_proj(0).bias
    expected = cache[hooks.mlp_post(0)] @ w.T + (0 if bias is None else bias)
    assert torch.allclose(expected, cache[hooks.mlp_out(0)], atol=1e-5)  # out = W @ in, orientation asked of the module
    original = w.clone()
    adapter.set_down_proj_weight(0, original * 2)
    assert torch.equal(adapter.down_proj_weight(0), original * 2)
    adapter.set_down_proj_weight(0, original)
    assert torch.equal(adapter.down_proj_weight(0), original)


def test_closed_form_update_equals_least_squares():
    g = torch.Generator().manual_seed(0)
    d_in, d_out, n, tokens, lam = 12, 5, 3, 200, 7.0
    corpus = torch.randn(tokens, d_in, generator=g, dtype=torch.float64)
    cov = corpus.T @ corpus / tokens
    keys, resid = torch.randn(d_in, n, generator=g, dtype=torch.float64), torch.randn(d_out, n, generator=g, dtype=torch.float64)
    update = closed_form_update(keys, resid, cov, lam)
    # argmin ||dW K - R||^2 + lam * tr(dW C dW^T), with C = X^T X / T, as one stacked least-squares problem.
    design = torch.cat([keys.T, (lam / tokens) ** 0.5 * corpus])
    target = torch.cat([resid.T, torch.zeros(tokens, d_out, dtype=torch.float64)])
    expected = torch.linalg.lstsq(design, target).solution.T
    assert torch.allclose(update, expected, atol=1e-10)


def test_covariance_is_the_second_moment_and_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path))
    import repro.gradsim.memit.covariance as cov_module
    from repro.models import gpt2_tokenizer

    lm = as_loaded(toy_gpt2(vocab_size=50257, n_positions=256), "toy", gpt2_tokenizer())
    monkeypatch.setattr(cov_module, "wikitext2", lambda: {"train": ["The cat sat on the mat .", "A dog ran ."] * 40})
    first = second_moments(lm, [0, 1], n_tokens=300, progress=False)
    files = sorted(p.name for p in (tmp_path / "gradsim-mom2").iterdir())
    assert len(files) == 2 and "layer0-300tok-float32" in files[0]
    assert torch.allclose(first[0], first[0].T) and torch.linalg.eigvalsh(first[0]).min() > -1e-6
    again = second_moments(lm, [0, 1], n_tokens=300, progress=False)
    assert torch.equal(first[1], again[1])


def test_memit_edit_on_gpt2_random_changes_its_target_and_restores_the_weights():
    from repro.models import load_model

    lm = load_model("gpt2-random")
    adapter, tok = lm.adapter, lm.tokenizer
    layers = edit_layers(adapter.n_layers)
    assert layers == [2, 3]
    hp = MemitHyperParams(layers=tuple(layers), v_num_grad_steps=8, mom2_update_weight=10.0)
    contexts = [[""], ["Once upon a time. "]]
    # An isotropic second moment keeps this test fast; the covariance itself is tested on a toy model.
    covs = {layer: torch.eye(adapter.down_proj_weight(layer).shape[1], dtype=torch.float64) for layer in layers}
    request = EditRequest("The capital of France is", "France", " Rome")
    before = {layer: adapter.down_proj_weight(layer).clone() for layer in range(adapter.n_layers)}
    logp_before, _ = score(adapter, tok, [(request.prompt, request.target_new)])
    edit = memit_edit(adapter, tok, request, hp, contexts, covs)
    assert all(torch.equal(before[layer], adapter.down_proj_weight(layer)) for layer in before)  # memit_edit leaves it
    with applied(adapter, edit.deltas):
        logp_after, _ = score(adapter, tok, [(request.prompt, request.target_new)])
        assert not torch.equal(before[2], adapter.down_proj_weight(2))
    assert float(logp_after[0] - logp_before[0]) > 1.0
    assert all(torch.equal(before[layer], adapter.down_proj_weight(layer)) for layer in before)
    assert edit.target.delta_norm <= hp.clamp_norm_factor * edit.target.h_norm + 1e-4


def test_applied_restores_the_weights_even_on_error():
    adapter = as_loaded(toy_gpt2(), "toy").adapter
    original = adapter.down_proj_weight(1).clone()
    with pytest.raises(RuntimeError), applied(adapter, {1: torch.ones_like(original)}):
        raise RuntimeError("boom")
    assert torch.equal(original, adapter.down_proj_weight(1))


def _table(correlated: bool, seed=0) -> PairTable:
    rng = np.random.default_rng(seed)
    edits = np.repeat(np.arange(8), 30)
    x = rng.normal(size=len(edits))
    y = (0.6 * x if correlated else 0) + rng.normal(size=len(edits)) + edits  # edit-level shifts: clustered
    return PairTable(edits, x, np.abs(y), {})


def test_permutation_test_detects_a_known_correlation_and_not_noise():
    assert within_edit_permutation_p(_table(correlated=True), 500, seed=1) < 0.01
    assert within_edit_permutation_p(_table(correlated=False), 500, seed=1) > 0.05


def _run_cli(argv, capsys):
    from repro.__main__ import main

    code = main(["gradsim", *argv])
    return code, capsys.readouterr().err


def test_cli_bad_inputs_are_one_line_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))  # nothing from the real data directory is needed
    good = tmp_path / "hotpot.json"
    good.write_text(json.dumps([EXAMPLE]))
    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"oops": ')
    no_answer = tmp_path / "no_answer.json"
    no_answer.write_text(json.dumps([{**EXAMPLE, "answer": "Atlantis"}]))
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    out = ["--output_dir", str(tmp_path / "out")]
    cases = {
        "not valid JSON": ["--hotpot_data", str(malformed), *out],
        "answer not in supporting facts": ["--hotpot_data", str(no_answer), *out],
        "supported families: GPT-2": ["--hotpot_data", str(good), "--model_path", str(bert), *out],
        "exceeds the": ["--hotpot_data", str(good), "--max_experiments", "1000", *out],
    }
    for message, argv in cases.items():
        code, err = _run_cli(argv, capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (message, err)

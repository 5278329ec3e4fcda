"""Unit tests of claim 2's pieces: cloze extraction, GradSim and the first-order prediction, MEMIT (batched
z, keys, solve, covariance), the statistics, the rule, bad inputs."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from toy_models import as_loaded, toy_gpt2, toy_llama

from repro import hooks
from repro.gradsim.correlation import edit_table, joint_permutation_p, mean_rho
from repro.gradsim.coupling import (
    first_order_change,
    gradsim_matrix,
    gradsim_matrix_loop,
    piece_gradient,
    piece_gradients,
)
from repro.gradsim.memit import (
    CovarianceSolve,
    EditRequest,
    MemitHyperParams,
    applied,
    closed_form_update,
    compute_z,
    compute_zs,
    covariance_weight,
    edit_layers,
    memit_edit,
    memit_edits,
)
from repro.gradsim.memit.contexts import flat, subject_last_index
from repro.gradsim.memit.covariance import second_moments
from repro.gradsim.pieces import KnowledgePiece, cloze_pieces, read_hotpot_file
from repro.gradsim.ripple import counterfactual_plan
from repro.gradsim.scoring import PieceBatch, Scorer, score
from repro.gradsim.verdict import gradsim_ruling
from repro.readers import InputError
from repro.verdicts import Estimate, Interval, Verdict

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


class CharTokenizer:
    """One token per character (ids < 500, so toy models read them), with a BOS id for LLaMA-like use."""

    pad_token_id = 0

    def __init__(self, bos: bool):
        self.bos = bos

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": ([499] if self.bos and add_special_tokens else []) + [1 + ord(c) % 498 for c in text]}


def _toy(make, layers=4):
    model = make(**({"n_layer": layers} if make is toy_gpt2 else {"num_hidden_layers": layers})).double()
    return as_loaded(model, "toy", CharTokenizer(bos=make is toy_llama))


REQUESTS = [EditRequest("The capital of France is", "France", " Rome"),
            EditRequest("Toyota is a company from", "Toyota", " Korea"),
            EditRequest("Albert Einstein was born in", "Albert Einstein", " Spain")]
CONTEXTS = [[""], ["Once upon a time. ", "Hi. "]]


def test_cloze_pieces_from_a_handcrafted_example():
    hop1, hop2 = cloze_pieces(EXAMPLE)
    assert (hop1.prompt, hop1.answer, hop1.subject, hop1.hop) == (
        "Acme Corp is a maker of anvils founded by", " Rufus Firefly", "Acme Corp", 1)
    # The answer sentence does not name its paragraph's subject, so the title is prefixed.
    assert (hop2.prompt, hop2.answer, hop2.subject, hop2.hop) == (
        "Rufus Firefly: He was born in", " Freedonia", "Rufus Firefly", 2)
    assert hop1.chain == hop2.chain == "hotpotqa:toy1"
    assert hop1.subject_end == len("Acme Corp")


@pytest.mark.parametrize("content, message", [
    ("[{not json", r"HotpotQA file .*bad.json is not valid JSON"),
    (json.dumps([{"_id": "x", "question": "q"}]), r"bad.json entry 0 \(x\): missing field 'answer'"),
    (json.dumps([{**EXAMPLE, "supporting_facts": [["Nowhere", 0]]}]),
     r"bad.json entry 0 \(toy1\): field 'supporting_facts' item 0 cites \['Nowhere', 0\], which is not in"),
    (json.dumps([{**EXAMPLE, "context": [["Acme Corp", [1, 2]]]}]),
     r"bad.json entry 0 \(toy1\): field 'context' item 0 sentence 0 must be a string, got an integer 1"),
    (json.dumps([EXAMPLE, {**EXAMPLE, "answer": 7}]), r"bad.json entry 1 \(toy1\): field 'answer' must be a string"),
    (json.dumps({"data": []}), r"bad.json: expected a non-empty JSON list of HotpotQA examples, got an object"),
])
def test_malformed_hotpot_files_name_the_file_the_record_and_the_field(tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(InputError, match=message):
        read_hotpot_file(bad)


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
    fast = gradsim_matrix(lm.adapter, batch, layer=1, max_tokens=12)  # small chunks: rows across chunks must meet
    slow = gradsim_matrix_loop(lm.adapter, batch, layer=1)
    assert np.allclose(fast, fast.T, atol=1e-12)
    assert np.allclose(np.diag(fast), 1.0, atol=1e-9)
    assert np.abs(fast - slow).max() <= 1e-5
    assert not lm.adapter.mlp_down_proj(1).weight.requires_grad


@pytest.mark.parametrize("make", [toy_gpt2, toy_llama])
def test_one_pass_gives_the_knowledge_check_and_the_first_order_prediction(make):
    lm = as_loaded(make().double(), "toy")  # float64: the Taylor check below reads small differences
    batch = _batch(n=6, seed=1)
    grads = piece_gradients(lm.adapter, batch, [0, 1], max_tokens=12)
    logprob, greedy = Scorer(lm.adapter, batch)()
    assert torch.allclose(grads.logprob, logprob, atol=1e-9) and torch.equal(grads.greedy, greedy)
    # <grad_W log P, u v^T> summed over layers, from factors, equals the same from the full gradients.
    g = torch.Generator().manual_seed(0)
    factors = {layer: (torch.randn(64, 1, generator=g, dtype=torch.float64),
                       torch.randn(lm.adapter.down_proj_weight(layer).shape[1], 1, generator=g, dtype=torch.float64))
               for layer in (0, 1)}
    predicted = first_order_change(grads, factors)
    expected = [sum(float((piece_gradient(lm.adapter, batch, r, layer).double() * (u @ v.T)).sum())
                    for layer, (u, v) in factors.items()) for r in range(batch.n)]
    assert np.allclose(predicted, expected, rtol=1e-4, atol=1e-6)
    # ... and predicts a small edit's actual change of log P.
    small = {layer: (u * 1e-5, v) for layer, (u, v) in factors.items()}
    with applied(lm.adapter, {layer: u @ v.T for layer, (u, v) in small.items()}):
        after, _ = Scorer(lm.adapter, batch)()
    assert np.allclose((after - logprob).numpy(), first_order_change(grads, small), rtol=1e-2, atol=1e-9)


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


def test_closed_form_update_equals_least_squares_and_the_cached_solve_equals_it():
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
    assert torch.allclose(resid @ CovarianceSolve(cov, lam).adjusted(keys).T, update, atol=1e-10)  # Woodbury
    singular = CovarianceSolve(torch.zeros(d_in, d_in, dtype=torch.float64), lam)  # falls back to the plain solve
    assert not singular.positive and singular.adjusted(keys[:, :1]).shape == (d_in, 1)


def test_lambda_is_rescaled_by_the_mlp_width():
    assert covariance_weight(16_384) == 15_000.0  # MEMIT's GPT-J
    assert covariance_weight(1_536) == pytest.approx(1_406.2)  # SmolLM2-135M
    assert covariance_weight(3_072) == pytest.approx(2_812.5)  # GPT-2 small


WIKI = ([" = First = ", " The cat sat on the mat . " * 30, " = = Section = = ", " It was warm . " * 20]
        + [line for k in range(8) for line in (f" = Article {k} = ", f" Word {k} follows word {k} here . " * 25)])


def test_covariance_is_the_second_moment_over_sampled_articles_and_cached_with_provenance(monkeypatch, tmp_path):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path))
    import repro.gradsim.memit.covariance as cov_module
    from repro.models import gpt2_tokenizer

    lm = as_loaded(toy_gpt2(vocab_size=50257, n_positions=256), "toy", gpt2_tokenizer())
    monkeypatch.setattr(cov_module, "wikitext2", lambda: {"train": WIKI})
    assert len(cov_module.articles(WIKI)) == 9  # a section heading does not start an article
    ids, lengths, n_articles = cov_module.corpus_rows(lm.tokenizer, 300, seed=0, seq_len=64)
    assert int(lengths.sum()) == 300 and n_articles == 5 == len(ids)
    first, info = second_moments(lm, [0, 1], n_tokens=300, seq_len=64, progress=False)
    assert info["built_layers"] == [0, 1] and info["articles"] == "5" and info["corpus"].endswith("wiki.train.tokens")
    assert torch.allclose(first[0], first[0].T) and torch.linalg.eigvalsh(first[0]).min() > -1e-6
    again, info = second_moments(lm, [0, 1], n_tokens=300, seq_len=64, progress=False)
    assert info["cached_layers"] == [0, 1] and torch.equal(first[1], again[1])
    _, info = second_moments(lm, [0], n_tokens=300, seq_len=64, seed=1, progress=False)  # other articles: rebuilt
    assert info["built_layers"] == [0] and len(list((tmp_path / "gradsim-mom2").iterdir())) == 3
    with pytest.raises(ValueError, match="need 20 WikiText-2 train articles"):
        cov_module.corpus_rows(lm.tokenizer, 20 * 64, seed=0, seq_len=64)


@pytest.mark.parametrize("make", [toy_gpt2, toy_llama])
def test_batched_z_trajectories_equal_one_at_a_time(make):
    lm = _toy(make)
    # No weight decay, a loose clamp: a toy model's tiny residual stream would let those terms dominate.
    hp = MemitHyperParams(layers=(1, 2), mom2_update_weight=10.0, v_num_grad_steps=6, v_lr=0.05, early_stop_loss=-1.0,
                          v_weight_decay=0.0, clamp_norm_factor=10.0)
    free = compute_zs(lm.adapter, lm.tokenizer, REQUESTS, hp, CONTEXTS)
    middle = sorted(free, key=lambda z: z.losses[0])[1].losses
    # Early stopping on, at a loss the edits reach at different steps: they must then stay where they stopped.
    hp = dataclasses.replace(hp, early_stop_loss=(middle[1] + middle[2]) / 2)
    batched = compute_zs(lm.adapter, lm.tokenizer, REQUESTS, hp, CONTEXTS)
    alone = [compute_z(lm.adapter, lm.tokenizer, r, hp, CONTEXTS) for r in REQUESTS]
    assert len({z.steps for z in batched}) > 1, [z.steps for z in batched]  # the test exercises early stopping
    for b, a in zip(batched, alone):
        assert b.steps == a.steps and np.allclose(b.losses, a.losses, rtol=0, atol=1e-10)
        assert torch.allclose(b.z, a.z, rtol=0, atol=1e-10)


@pytest.mark.parametrize("make", [toy_gpt2, toy_llama])
def test_z_loss_from_recorded_prefixes_equals_a_full_forward(make):
    """The optimisation runs only the positions from the subject on, over recorded prefixes; the NLL it
    reports at its z = h + delta equals the NLL of full context + prompt rows with delta added by a hook."""
    lm = _toy(make)
    adapter, tok = lm.adapter, lm.tokenizer
    hp = MemitHyperParams(layers=(1, 2), mom2_update_weight=10.0, v_num_grad_steps=4, v_lr=0.05)
    site = hooks.resid_post(hp.z_layer)
    for request, target in zip(REQUESTS, compute_zs(adapter, tok, REQUESTS, hp, CONTEXTS)):
        with hooks.caching(adapter, [site]) as cache:
            adapter.forward(torch.tensor([tok(request.prompt)["input_ids"]]))
        delta = target.z - cache[site][0, subject_last_index(tok, request.prompt, request.subject_end)]
        nll = []
        for context in flat(CONTEXTS):
            text = context + request.prompt
            at = subject_last_index(tok, text, len(context) + request.subject_end)

            def add_delta(act, at=at, delta=delta):
                act = act.clone()
                act[:, at] += delta
                return act

            with hooks.patching(adapter, {site: add_delta}):
                logp, _ = score(adapter, tok, [(text, request.target_new)])
            nll.append(-float(logp[0]) / len(tok(request.target_new, add_special_tokens=False)["input_ids"]))
        assert np.isclose(np.mean(nll), target.nll_after, atol=1e-9)


@pytest.mark.parametrize("make", [toy_gpt2, toy_llama])
def test_batched_edits_equal_one_at_a_time_and_restore_the_weights(make):
    lm = _toy(make)
    adapter, tok = lm.adapter, lm.tokenizer
    hp = MemitHyperParams(layers=(1, 2), mom2_update_weight=10.0, v_num_grad_steps=3)
    d_in = adapter.down_proj_weight(1).shape[1]
    solvers = {layer: CovarianceSolve(torch.eye(d_in, dtype=torch.float64), hp.mom2_update_weight) for layer in hp.layers}
    before = {layer: adapter.down_proj_weight(layer).clone() for layer in range(adapter.n_layers)}
    together = memit_edits(adapter, tok, REQUESTS, hp, CONTEXTS, solvers)
    for request, edit in zip(REQUESTS, together):
        alone = memit_edits(adapter, tok, [request], hp, CONTEXTS, solvers)[0]
        for layer in hp.layers:  # keys read with the edit's lower layers put in by hooks == with the weights edited
            assert torch.allclose(edit.deltas(torch.float64)[layer], alone.deltas(torch.float64)[layer], atol=1e-10)
        assert 0 < edit.written[2] < 1
    assert all(torch.equal(before[layer], adapter.down_proj_weight(layer)) for layer in before)


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
    with applied(adapter, edit.deltas()):
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


def _fact(subject, relation, answer, kind):
    return KnowledgePiece(f"facts:{relation}:{subject}", "facts", None, 1, f"{subject} {relation}", " " + answer,
                          subject, relation=relation, kind=kind)


def test_counterfactual_targets_are_of_the_same_kind_and_never_the_own_answer():
    pieces = [_fact("France", "capital", "Paris", "city"), _fact("Japan", "language", "Japanese", "language"),
              _fact("Cold War", "end", "1991", "year"), _fact("Mars", "moon", "Phobos", "moon")]
    targets = {"city": [" Paris", " Rome"], "language": [" Japanese", " Finnish"], "year": [" 1991", " 1865"]}
    plan, skipped = counterfactual_plan(pieces, [0, 1, 2, 3], targets, max_edits=10, seed=0)
    assert sorted(plan) == [(0, " Rome"), (1, " Finnish"), (2, " 1865")]
    assert skipped == {"no other answer of kind 'moon'": 1}


def test_pairs_left_out_are_counted_and_the_target_confound_is_excluded():
    answers = [" Finnish", " Japanese", " Paris", " Finnish"]
    gradsim = np.eye(4)
    table = edit_table(gradsim, [1, 2], np.ones((2, 4)), np.ones((2, 4)), answers, [" Finnish", " Rome"])
    assert table.exclusions == {"the edited piece itself": 2, "piece's answer is the edit's new target": 2}
    assert table.valid.tolist() == [[False, False, True, False], [True, True, False, True]]


def _planted(effect: float, seed=0, edits=10, pieces=30):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=pieces)[None] + rng.normal(size=(edits, pieces))
    y = rng.normal(size=pieces)[None] + effect * x + rng.normal(size=(edits, pieces))
    valid = np.ones_like(x, dtype=bool)
    valid[np.arange(edits), np.arange(edits)] = False  # each edit's own piece
    return x, np.abs(y - y.min()), valid


def test_joint_permutation_detects_a_planted_correlation_and_not_noise():
    x, y, ok = _planted(0.8)
    assert mean_rho(x, y, ok) > 0.3 and joint_permutation_p(x, y, ok, 300, seed=1) < 0.01
    x, y, ok = _planted(0.0, seed=3)
    assert joint_permutation_p(x, y, ok, 300, seed=1) > 0.05


def _est(value, low, high):
    return Estimate(value, Interval(low, high, 36, "edits", "test"))


@pytest.mark.parametrize("rho, control, valid, verdict, by", [
    (_est(0.35, 0.10, 0.55), 0.8, 36, Verdict.REPRODUCED, "region"),
    (_est(0.25, 0.10, 0.40), 0.8, 36, Verdict.INCONCLUSIVE, "region"),  # above 0 but rho < 0.3
    (_est(0.35, -0.05, 0.60), 0.8, 36, Verdict.INCONCLUSIVE, "region"),  # the interval reaches 0
    (_est(0.10, -0.05, 0.25), 0.8, 36, Verdict.NOT_REPRODUCED, "region"),  # every rho >= 0.3 excluded
    (_est(0.10, 0.02, 0.25), 0.8, 36, Verdict.NOT_REPRODUCED, "region"),  # above 0, yet below 0.3 throughout
    (_est(0.35, 0.10, 0.55), 0.4, 36, Verdict.INCONCLUSIVE, "gate: positive control"),
    (_est(0.10, -0.05, 0.25), 0.8, 20, Verdict.INCONCLUSIVE, "gate: edits take"),
])
def test_the_rule_combines_two_parts_and_two_gates(rho, control, valid, verdict, by):
    ruling = gradsim_ruling(rho, _est(control, control - 0.1, control + 0.1), attempted=36, valid=valid)
    assert ruling.verdict == verdict and ruling.decided_by.startswith(by), ruling


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
    numbers = tmp_path / "numbers.json"
    numbers.write_text(json.dumps([{**EXAMPLE, "context": [["Acme Corp", [3, 4]]], "supporting_facts": []}]))
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    out = ["--output_dir", str(tmp_path / "out")]
    cases = {
        "is not valid JSON": ["--hotpot_data", str(malformed), *out],
        "answer not in supporting facts": ["--hotpot_data", str(no_answer), *out],
        "numbers.json entry 0 (toy1): field 'context' item 0 sentence 0 must be a string": ["--hotpot_data", str(numbers), *out],
        "--max_samples 1000: " + str(good) + " holds 1 record; give at most 1.": [
            "--hotpot_data", str(good), "--max_samples", "1000", *out],
        "supported families: GPT-2": ["--hotpot_data", str(good), "--model_path", str(bert), *out],
        "exceeds the": ["--hotpot_data", str(good), "--max_experiments", "1000", *out],
    }
    for message, argv in cases.items():
        code, err = _run_cli(argv, capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (message, err)
    assert not (tmp_path / "out").exists()

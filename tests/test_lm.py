"""Unit tests of repro.lm: corpora, the three models, the training recipe, resume, sampling, fine-tuning, errors.

Everything runs on tiny corpora and models (vocabulary of a few words, width 16-32) in seconds.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from repro.lm.baselines import KneserNeyBigram, Unigram
from repro.lm.corpus import (
    EOS,
    UNK,
    CorpusError,
    batchify,
    build_corpus,
    corpus_lines,
    n_windows,
    oov_rate,
    ptb_conventions,
    windows,
    words,
)
from repro.lm.finetune import finetune, lr_at, pack, pubmedqa_splits, spread
from repro.lm.generation import SampleStats, distinct_n, repeated_ngram_rate, sample
from repro.lm.models import KINDS, LMConfig, TanhRNN, build_model, detach_state
from repro.lm.trainer import (
    CheckpointError,
    Plateau,
    evaluate,
    lm_loss,
    read_checkpoint,
    run_provenance,
    train_lm,
)
from repro.profiles import FinetuneSettings, LMSettings
from repro.readers import InputError

TINY_TEXT = {
    "train": ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"] * 8,
    "valid": ["the cat sat on the log", "a dog and a zebra"],
}
TINY = LMSettings(seq_len=8, train_tokens=None, max_epochs=4, eval_every_tokens=None, select_tokens=20, batch_size=4,
                  eval_batch_size=2, log_every=3, sample_words=5, samples_per_prompt=2)


def tiny_config(kind: str, vocab: int, **kw) -> LMConfig:
    return LMConfig(kind, vocab, **{"d_model": 16, "n_layers": 2, "n_heads": 2, "context": 8, **kw})


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models gain nothing from more threads
    yield
    torch.set_num_threads(previous)


# ---- corpus ----


def test_vocabulary_batchify_and_windows():
    corpus = build_corpus("tiny", TINY_TEXT)
    assert words(["a b", ""]) == ["a", "b", EOS, EOS]
    v = corpus.vocab
    assert v.itos[:4] == ("the", "cat", "sat", "on") and EOS in v.stoi and UNK in v.stoi
    assert v.decode(v.encode(["the", "zebra"])) == ["the", UNK]  # unknown words read as <unk>
    assert oov_rate(v, ["the", "zebra"]) == 0.5
    ids = torch.arange(23)
    data = batchify(ids, 4)  # [4, 5]: rows are contiguous stretches of the stream; the tail is dropped
    assert data.tolist()[1] == [5, 6, 7, 8, 9]
    pairs = list(windows(data, 3))
    assert len(pairs) == n_windows(data, 3) == 2
    assert [x.shape[1] for x, _ in pairs] == [3, 1]
    assert torch.equal(pairs[0][1], data[:, 1:4])  # targets are the inputs shifted by one


def test_bad_corpora_are_clear_errors(tmp_path):
    with pytest.raises(CorpusError, match="no 'valid' split"):
        build_corpus("tiny", {"train": ["a b"]})
    with pytest.raises(CorpusError, match="'train' split has no words"):
        build_corpus("tiny", {"train": ["", "  "], "valid": ["a"]})
    (tmp_path / "train.txt").write_text("a b c\n")
    with pytest.raises(CorpusError, match="looked for .*valid.txt"):
        corpus_lines(str(tmp_path))
    with pytest.raises(CorpusError, match="use one of ptb, wikitext2"):
        corpus_lines("no-such-corpus")
    with pytest.raises(CorpusError, match="too few"):
        batchify(torch.arange(3), 4)
    (tmp_path / "valid.txt").write_bytes(b"caf\xe9 au lait\n")  # Latin-1, not UTF-8
    with pytest.raises(InputError, match="valid.txt is not UTF-8 text .*line 1"):
        corpus_lines(str(tmp_path))


def test_wikitext_in_ptb_conventions():
    lines = [" = Lobsters = ", "", " The European lobster , or Homarus , weighs 1 @,@ 000 g ( 5 % ) . It is well @-@ known "
             "in the 1980s ! <unk> 's"]
    assert ptb_conventions(lines) == ["the european lobster or homarus weighs N g N N", "it is well-known in the 1980s",
                                      "<unk> 's"]


# ---- baselines ----


def test_baselines_are_distributions_over_the_vocabulary():
    ids = torch.tensor([0, 1, 2, 0, 1, 3, 0, 1])  # vocabulary of 6: words 4 and 5 never seen
    unigram, bigram = Unigram(ids, 6), KneserNeyBigram(ids, 6)
    every = torch.arange(6)
    assert float(torch.tensor(unigram.token_losses(None, every)).neg().exp().sum()) == pytest.approx(1.0)
    assert unigram.token_losses(None, torch.tensor([0]))[0] == pytest.approx(-math.log(4 / 14))  # (3 + 1) / (8 + 6)
    for context in (0, 1, 5):  # seen often, seen once before two words, never seen
        p = torch.tensor(bigram.token_losses(torch.full((6,), context), every)).neg().exp()
        assert float(p.sum()) == pytest.approx(1.0) and bool((p > 0).all())
    assert bigram.token_losses(torch.tensor([0]), torch.tensor([1]))[0] < unigram.token_losses(None, torch.tensor([1]))[0]


# ---- models ----


def test_hand_written_rnn_matches_nn_rnn():
    torch.manual_seed(0)
    ours, reference = TanhRNN(5, 7, 3, dropout=0.0), nn.RNN(5, 7, 3, batch_first=True)
    reference.load_state_dict(ours.state_dict())  # same names and shapes as nn.RNN's
    x, h0 = torch.randn(2, 6, 5), torch.randn(3, 2, 7)
    out, h = ours(x, h0)
    ref_out, ref_h = reference(x, h0)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(h, ref_h)


@pytest.mark.parametrize("kind", KINDS)
def test_state_carries_the_context(kind):
    # One signature for every model: two halves with the state passed on equal the whole sequence.
    torch.manual_seed(0)
    model = build_model(tiny_config(kind, 20)).eval()
    ids = torch.randint(0, 20, (3, 8))
    whole, _ = model(ids)
    first, state = model(ids[:, :5])
    second, _ = model(ids[:, 5:], state)
    assert whole.shape == (3, 8, 20)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-5, rtol=1e-5)
    assert detach_state(state) is not None


@pytest.mark.parametrize("kind", KINDS)
def test_each_model_overfits_a_tiny_batch(kind):
    torch.manual_seed(0)
    model = build_model(tiny_config(kind, 12, dropout=0.0, d_model=32))
    ids = torch.randint(0, 12, (2, 9))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        loss = lm_loss(model(ids[:, :-1])[0], ids[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[0] > 2.0 and losses[-1] < 0.2 * losses[0], (losses[0], losses[-1])


def test_unknown_kind_lists_the_valid_ones():
    with pytest.raises(ValueError, match="rnn, lstm, transformer"):
        build_model(LMConfig("gru", 10))


# ---- the recipe ----


def test_plateau_halves_after_two_bad_rounds_and_stops_after_five():
    plateau = Plateau(1e-3, lr_patience=2, stop_patience=5)
    events = [plateau.update(loss) for loss in (5.0, 4.0, 4.5, 4.1, 4.2, 3.9, 4.0, 4.0, 4.0, 4.0, 4.0)]
    assert events == ["improved", "improved", "wait", "halved", "wait", "improved",
                      "wait", "halved", "wait", "halved", "stop"]
    assert plateau.lr == pytest.approx(1e-3 / 8) and plateau.best == 3.9


def _train(kind: str, folder, settings=TINY, seed: int = 0, **kw):
    corpus = build_corpus("tiny", TINY_TEXT)
    torch.manual_seed(seed)
    model = build_model(tiny_config(kind, len(corpus.vocab), context=settings.seq_len))
    select = corpus.splits["valid"][-settings.select_tokens :]
    provenance = run_provenance(model, corpus.splits["train"], select, settings, vocab=corpus.vocab, profile="test", seed=seed)
    return model, train_lm(model, corpus.splits["train"], select, settings, folder, provenance=provenance,
                           vocab=corpus.vocab, **kw)


def test_training_halves_the_lr_and_stops_early_when_the_selection_loss_stalls(tmp_path):
    # A tiny model that memorises 24 repeated lines overfits after a few epochs: the selection loss rises,
    # the lr halves after 2 rounds without a new best and training stops after 5, long before 40 epochs.
    settings = replace(TINY, max_epochs=40, lr=3e-2)
    model, run = _train("lstm", tmp_path, settings=settings)
    events = [r["event"] for r in run.rounds]
    assert run.stopped_early and len(run.rounds) < 40 and events[-1] == "stop"
    halved = events.index("halved")
    assert run.rounds[halved + 1]["lr"] == pytest.approx(run.rounds[halved]["lr"] / 2)
    best = run.best_round["round"]
    assert events[best - 1] == "improved" and len(run.rounds) - best == settings.stop_patience
    # the model ends with the best round's weights
    select = build_corpus("tiny", TINY_TEXT).splits["valid"][-TINY.select_tokens :]
    assert evaluate(model, batchify(select, TINY.eval_batch_size), TINY.seq_len) == pytest.approx(run.best_val_loss, rel=1e-5)


@pytest.mark.parametrize("kind", ["rnn", "transformer"])
def test_resume_after_interruption_gives_the_same_numbers(kind, tmp_path):
    # Rounds of 32 tokens: an interruption mid-epoch resumes with the carried state and RNG restored.
    settings = replace(TINY, max_epochs=2, eval_every_tokens=32)
    _, whole = _train(kind, tmp_path / "whole", settings=settings)
    assert len(whole.rounds) > 2 and whole.rounds[1]["epoch"] == 1
    _, part = _train(kind, tmp_path / "resumed", settings=settings, stop_after_rounds=2)  # as if interrupted
    assert len(part.rounds) == 2
    model, resumed = _train(kind, tmp_path / "resumed", settings=settings)
    assert resumed.resumed_from_round == 2
    strip = lambda rounds: [{k: v for k, v in r.items() if k != "train_seconds"} for r in rounds]  # noqa: E731
    assert strip(resumed.rounds) == strip(whole.rounds)
    assert resumed.batch_losses == whole.batch_losses
    assert all(torch.equal(a, b) for a, b in zip(resumed.selection_losses, whole.selection_losses))
    assert (tmp_path / "resumed" / "metrics.json").is_file()


def test_training_lowers_validation_loss_and_writes_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    _, run = _train("lstm", tmp_path, tensorboard_dir=tmp_path / "tb")
    assert run.rounds[-1]["train_loss"] < run.rounds[0]["train_loss"]
    assert run.best_val_loss < math.log(20)  # better than uniform over the tiny vocabulary
    assert run.tokens_per_s > 0 and all(r["train_seconds"] > 0 for r in run.rounds)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_a_resume_with_other_settings_is_refused(tmp_path):
    _train("rnn", tmp_path, settings=replace(TINY, max_epochs=1))
    with pytest.raises(CheckpointError, match="other settings .*model.kind: 'rnn' there, 'lstm' here"):
        _train("lstm", tmp_path)
    with pytest.raises(CheckpointError, match="recipe.seq_len: 8 there, 4 here"):
        _train("rnn", tmp_path, settings=replace(TINY, seq_len=4))
    with pytest.raises(CheckpointError, match="seed: 0 there, 1 here"):
        _train("rnn", tmp_path, seed=1)
    saved = read_checkpoint(tmp_path / "last.pt")
    assert saved["provenance"]["profile"] == "test" and saved["vocabulary"][:2] == ["the", "cat"]
    assert saved["provenance"]["code"]["checkpoint_format"] == 2
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        read_checkpoint(tmp_path / "junk.pt")


# ---- samples ----


def test_sampling_is_seeded_and_measured():
    corpus = build_corpus("tiny", TINY_TEXT)
    torch.manual_seed(0)
    model = build_model(tiny_config("transformer", len(corpus.vocab)))
    one = sample(model, corpus.vocab, "the meaning of life is", 12, seed=3)
    assert one == sample(model, corpus.vocab, "the meaning of life is", 12, seed=3) and len(one) == 12
    assert repeated_ngram_rate(["a", "b", "c", "a", "b", "c"]) == pytest.approx(1 / 4)
    assert distinct_n([["a", "b"], ["a", "c"]], 1) == pytest.approx(3 / 4)
    stats = SampleStats.of([["a", UNK, "a", UNK]])
    assert stats.unk_rate == 0.5 and stats.distinct_2 == pytest.approx(2 / 3)


# ---- fine-tuning ----


class Chars:
    """A tokenizer stand-in: one id per character (mod 500, a toy model's vocabulary), end-of-text 0."""

    eos_token_id = 0

    def __call__(self, text):
        return {"input_ids": [1 + ord(c) % 499 for c in text]}


RECORDS = {str(i): {"QUESTION": f"q{i}?", "CONTEXTS": ["c1", "c2"], "LONG_ANSWER": "yes."} for i in (3, 1, 2)}


def test_pubmedqa_texts_template_marks_and_lr_schedule():
    train, test = pubmedqa_splits(RECORDS, frozenset({"2"}))
    assert ["".join(p for p, _ in d) for d in train] == ["Question: q1?\nContext: c1 c2\nAnswer: yes.",
                                                          "Question: q3?\nContext: c1 c2\nAnswer: yes."]
    assert len(test) == 1
    blocks, template = pack(Chars(), [[("Q:", True), (" ab", False)]], 3)  # Q : _ a b <eos> -> 2 full blocks
    assert blocks.tolist() == [[1 + ord("Q") % 499, 1 + ord(":"), 1 + ord(" ")], [1 + ord("a"), 1 + ord("b"), 0]]
    assert template.tolist() == [[True, True, False], [False, False, True]]  # end-of-text belongs to the layout
    assert spread(10, 4) == [0, 3, 6, 9] and spread(3, None) == [0, 1, 2]
    s = FinetuneSettings(lr=1.0, warmup_steps=2)
    assert [lr_at(i, s, 6) for i in range(6)] == [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]


@pytest.mark.parametrize("method", ["lora", "full"])
def test_finetune_scores_the_same_tokens_before_and_after(method):
    from toy_models import toy_llama

    pytest.importorskip("peft")
    model = toy_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    records = {str(i): {"QUESTION": f"what is {i}?", "CONTEXTS": ["some context " * 3], "LONG_ANSWER": "an answer."}
               for i in range(40)}
    train, test = pubmedqa_splits(records, frozenset(str(i) for i in range(30, 40)))
    settings = FinetuneSettings(method=method, seq_len=16, max_steps=6, warmup_steps=2, lr=1e-2, eval_blocks=5,
                                new_tokens=0, select_blocks=4, eval_every=3 if method == "full" else None)
    m = finetune(model, Chars(), train, test, ["a control line of text"] * 40, settings)
    assert m.steps == 6 and m.held_before.shape == m.held_after.shape == m.held_template.shape == (5, 15)
    assert m.control_before.shape == (5, 15) and m.held_template.any() and not m.held_template.all()
    assert m.loss_after < m.loss_before  # six steps at a high lr learn the repeated layout
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the loaded model is untouched
    assert (m.trainable_parameters < sum(p.numel() for p in model.parameters())) == (method == "lora")
    assert (len(m.evals) == 2) == (method == "full")


# ---- the pipeline on tiny corpora, both profiles' code paths ----


def _lines(name):
    train = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog", "the N cats ran"] * 25
    valid = ["the cat sat on the log", "a dog and a zebra", "the mat sat on a cat"] * 30
    wiki = [" = Cats = ", " The cat sat , on 1 @,@ 000 mats . A dog ran ( fast ) ! ", ""] * 20
    return {"ptb": {"train": train, "valid": valid}, "wikitext2": {"train": train, "valid": wiki}}[name]


@pytest.mark.parametrize("both_corpora", [False, True], ids=["cpu-path", "gpu-path"])
def test_the_pipeline_scores_models_and_baselines_on_the_same_tokens(both_corpora, tmp_path):
    from repro.lm.run import run_architectures

    s = LMSettings(corpora=("ptb", "wikitext2") if both_corpora else ("ptb",), d_model=16, n_layers=1, dropout=0.0,
                   seq_len=8, train_tokens=None if both_corpora else 400, max_epochs=2 if both_corpora else 1,
                   eval_every_tokens=None if both_corpora else 160, select_tokens=120, report_tokens=None,
                   part_b_tokens=200, segment_tokens=20, seeds=(0,) if both_corpora else (0, 1), batch_size=4, eval_batch_size=2, log_every=3,
                   sample_words=4, samples_per_prompt=1)
    wiki = {"wikitext2": {"train": _lines("ptb")["train"], "valid": _lines("ptb")["valid"]}} if both_corpora else {}
    result = run_architectures(s, tmp_path, tensorboard_dir=tmp_path / "tb", profile="test",
                               read_lines=lambda name: wiki.get(name) or _lines(name))
    ptb, part_b = result.evaluations["ptb"], result.evaluations["wikitext2"]
    assert part_b.trained_on == ("wikitext2" if both_corpora else "ptb")
    for e in (ptb, part_b):
        assert all(len(x) == e.tokens for by_seed in e.losses.values() for x in by_seed.values())
        assert all(len(x) == e.tokens for x in e.baselines.values())
    assert (result.part_b_oov_rate is None) == both_corpora
    assert set(result.groups) == {"ptb", "convergence", "wikitext2"}
    m = result.measurement()
    assert m.ruling is not None and m.verdict == result.verdict and len(m.ruling.parts) == 6 and len(m.ruling.gates) == 3
    assert result.snapshot()["verdict"] == m.verdict.value
    assert all(p.is_file() for p in result.figures.values())
    assert result.samples.keys() == set(KINDS)
    if pytest.importorskip("tensorboard"):
        assert len({p.parent.name for p in result.tensorboard}) == 3 * len(s.seeds) * len(s.corpora)


# ---- command line: every bad input is one line on stderr, exit 2, before work ----


@pytest.fixture
def corpus_dir(tmp_path):
    (tmp_path / "train.txt").write_text("\n".join(TINY_TEXT["train"]))
    (tmp_path / "valid.txt").write_text("\n".join(TINY_TEXT["valid"] * 3))
    return tmp_path


def _one_line_error(capsys, *fragments):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert all(f in err for f in fragments), err
    return err


def test_cli_trains_samples_and_resumes(corpus_dir, capsys):
    from repro.lm.cli import main

    run = corpus_dir / "run"
    train = ["train", "--corpus", str(corpus_dir), "--out", str(run), "--epochs", "1", "--seq-len", "4",
             "--train-tokens", "all", "--quiet", "--profile", "cpu"]
    assert main([*train, "--kind", "lstm"]) == 0
    assert main(["sample", "--checkpoint", str(run / "best.pt"), "--words", "3"]) == 0  # its own vocabulary
    assert capsys.readouterr().out.splitlines()[-1].startswith("the meaning of life is ")
    assert main([*train, "--kind", "lstm"]) == 0  # a finished run found again: nothing redone
    assert main([*train, "--kind", "rnn"]) == 2  # the folder holds an LSTM's checkpoint
    _one_line_error(capsys, "other settings", "model.kind: 'lstm' there, 'rnn' here")
    train[train.index("--seq-len") + 1] = "5"
    assert main([*train, "--kind", "lstm"]) == 2
    _one_line_error(capsys, "recipe.seq_len: 4 there, 5 here")


@pytest.mark.parametrize("flags, fragments", [
    (["--train-tokens", "-5"], ["--train-tokens must be a positive integer, got -5"]),
    (["--train-tokens", "0"], ["--train-tokens must be a positive integer, got 0"]),
    (["--epochs", "0"], ["--epochs must be a positive integer"]),
    (["--seq-len", "-1"], ["--seq-len must be a positive integer"]),
], ids=["train-tokens-negative", "train-tokens-zero", "epochs-zero", "seq-len-negative"])
def test_cli_refuses_bad_train_flags_before_creating_out(flags, fragments, corpus_dir, capsys):
    from repro.lm.cli import main

    out = corpus_dir / "run"
    assert main(["train", "--corpus", str(corpus_dir), "--out", str(out), "--quiet", *flags]) == 2
    _one_line_error(capsys, *fragments)
    assert not out.exists()


def test_cli_refuses_bad_corpora_before_creating_out(tmp_path, capsys):
    from repro.lm.cli import main

    out = tmp_path / "run"
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    (tiny / "train.txt").write_text("a b\n")  # 2 words (+ <eos>): not one batch of 20 rows
    (tiny / "valid.txt").write_text("a b\n" * 40)
    assert main(["train", "--corpus", str(tiny), "--out", str(out), "--quiet"]) == 2
    _one_line_error(capsys, "the training prefix has 3 tokens, fewer than the 40")
    assert not out.exists()
    (tiny / "train.txt").write_bytes(b"na\xefve\n" * 100)
    assert main(["train", "--corpus", str(tiny), "--out", str(out), "--quiet"]) == 2
    _one_line_error(capsys, "train.txt is not UTF-8 text")
    assert not out.exists()


def test_cli_refuses_bad_sample_input(corpus_dir, capsys):
    import torch as _torch

    from repro.lm.cli import main

    run = corpus_dir / "run"
    assert main(["train", "--corpus", str(corpus_dir), "--out", str(run), "--epochs", "1", "--seq-len", "4",
                 "--train-tokens", "all", "--quiet", "--kind", "lstm"]) == 0
    sample = ["sample", "--checkpoint", str(run / "best.pt")]
    for flags, fragment in ((["--words", "-3"], "--words must be a positive integer, got -3"),
                            (["--words", "0"], "--words must be a positive integer, got 0"),
                            (["--prompt", ""], "--prompt is empty"),
                            (["--temperature", "0"], "--temperature must be a positive number")):
        assert main([*sample, *flags]) == 2
        _one_line_error(capsys, fragment)
    # A checkpoint whose config says transformer but which holds the LSTM's weights.
    saved = _torch.load(run / "best.pt", weights_only=True)
    saved["provenance"]["model"]["kind"] = "transformer"
    _torch.save(saved, corpus_dir / "lying.pt")
    assert main(["sample", "--checkpoint", str(corpus_dir / "lying.pt")]) == 2
    _one_line_error(capsys, "do not fit the transformer model its config describes")
    assert main(["sample", "--checkpoint", str(corpus_dir / "train.txt")]) == 2
    _one_line_error(capsys, "cannot be read as a checkpoint")


def test_cli_interrupted_training_says_what_is_kept(corpus_dir, capsys, monkeypatch):
    from repro.lm import cli, trainer

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train_lm", interrupt)
    assert cli.main(["train", "--corpus", str(corpus_dir), "--out", str(corpus_dir / "run"), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "last finished round is kept" in err and "run the same command again to resume" in err
    assert "--model" not in err

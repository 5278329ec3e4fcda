"""Unit tests of repro.lm: corpora, the three models, the training recipe, resume, sampling, fine-tuning, errors.

Everything runs on tiny corpora and models (vocabulary of a few words, width 16-32) in seconds.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from repro.lm.corpus import (
    EOS,
    UNK,
    CorpusError,
    batchify,
    build_corpus,
    corpus_lines,
    n_windows,
    oov_rate,
    windows,
    words,
)
from repro.lm.finetune import lr_at, pack, pubmedqa_splits
from repro.lm.generation import SampleStats, distinct_n, repeated_ngram_rate, sample
from repro.lm.models import KINDS, LMConfig, TanhRNN, build_model, detach_state
from repro.lm.trainer import CheckpointError, Plateau, lm_loss, load_checkpoint, train_lm
from repro.profiles import FinetuneSettings, LMSettings

TINY_TEXT = {
    "train": ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"] * 8,
    "valid": ["the cat sat on the log", "a dog and a zebra"],
}
TINY = LMSettings(seq_len=8, train_tokens=None, valid_tokens=None, max_epochs=4, batch_size=4, eval_batch_size=2,
                  log_every=3, sample_words=5, samples_per_prompt=2)


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


def test_lr_halves_after_two_bad_epochs_and_training_stops_after_five():
    plateau = Plateau(1e-3, lr_patience=2, stop_patience=5)
    events = [plateau.update(loss) for loss in (5.0, 4.0, 4.5, 4.1, 4.2, 3.9, 4.0, 4.0, 4.0, 4.0, 4.0)]
    assert events == ["improved", "improved", "wait", "halved", "wait", "improved",
                      "wait", "halved", "wait", "halved", "stop"]
    assert plateau.lr == pytest.approx(1e-3 / 8) and plateau.best == 3.9


def _train(kind: str, folder, settings=TINY, **kw):
    corpus = build_corpus("tiny", TINY_TEXT)
    torch.manual_seed(0)
    model = build_model(tiny_config(kind, len(corpus.vocab), context=settings.seq_len))
    return model, train_lm(model, corpus.splits["train"], corpus.splits["valid"], settings, folder, **kw)


@pytest.mark.parametrize("kind", ["rnn", "transformer"])
def test_resume_after_interruption_gives_the_same_numbers(kind, tmp_path):
    _, whole = _train(kind, tmp_path / "whole")
    _, part = _train(kind, tmp_path / "resumed", stop_after_epochs=2)  # as if interrupted after epoch 2
    assert len(part.epochs) == 2
    model, resumed = _train(kind, tmp_path / "resumed")
    assert resumed.resumed_from_epoch == 2
    strip = lambda epochs: [{k: v for k, v in e.items() if k != "seconds"} for e in epochs]  # noqa: E731
    assert strip(resumed.epochs) == strip(whole.epochs)
    assert resumed.batch_losses == whole.batch_losses
    assert (tmp_path / "resumed" / "metrics.json").is_file()


def test_training_lowers_validation_loss_and_writes_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    _, run = _train("lstm", tmp_path, tensorboard=True)
    assert run.epochs[-1]["train_loss"] < run.epochs[0]["train_loss"]
    assert run.best_val_loss < math.log(20)  # better than uniform over the tiny vocabulary
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_checkpoint_from_another_model_is_refused(tmp_path):
    _train("rnn", tmp_path, settings=replace(TINY, max_epochs=1))
    corpus = build_corpus("tiny", TINY_TEXT)
    lstm = build_model(tiny_config("lstm", len(corpus.vocab)))
    with pytest.raises(CheckpointError, match="another model .*kind: 'rnn' there, 'lstm' here"):
        train_lm(lstm, corpus.splits["train"], corpus.splits["valid"], TINY, tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "junk.pt", lstm.config.as_dict())


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


# ---- fine-tuning helpers ----


def test_pubmedqa_texts_and_lr_schedule():
    records = {str(i): {"QUESTION": f"q{i}?", "CONTEXTS": ["c1", "c2"], "LONG_ANSWER": "yes."} for i in (3, 1, 2)}
    train, test = pubmedqa_splits(records, frozenset({"2"}))
    assert train == ["Question: q1?\nContext: c1 c2\nAnswer: yes.", "Question: q3?\nContext: c1 c2\nAnswer: yes."]
    assert len(test) == 1

    class Chars:  # a tokenizer stand-in: one id per character
        eos_token_id = 0

        def __call__(self, text):
            return {"input_ids": [ord(c) for c in text]}

    blocks = pack(Chars(), ["abc", "de"], 3)  # a b c <eos> d e <eos> -> 2 full blocks
    assert blocks.tolist() == [[97, 98, 99], [0, 100, 101]]
    s = FinetuneSettings(lr=1.0, warmup_steps=2)
    assert [lr_at(i, s, 6) for i in range(6)] == [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]


# ---- command line ----


def test_cli_trains_samples_and_refuses_bad_input(tmp_path, capsys):
    from repro.lm.cli import main

    (tmp_path / "train.txt").write_text("\n".join(TINY_TEXT["train"]))
    (tmp_path / "valid.txt").write_text("\n".join(TINY_TEXT["valid"] * 3))
    run = tmp_path / "run"
    train = ["train", "--corpus", str(tmp_path), "--out", str(run), "--epochs", "1", "--seq-len", "4",
             "--train-tokens", "0", "--quiet", "--profile", "cpu"]
    assert main([*train, "--kind", "lstm"]) == 0
    assert main(["sample", "--checkpoint", str(run / "best.pt"), "--corpus", str(tmp_path), "--words", "3"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("the meaning of life is ")
    assert main([*train, "--kind", "rnn"]) == 2  # the folder holds an LSTM's checkpoint
    assert "another model" in capsys.readouterr().err
    (tmp_path / "valid.txt").unlink()
    assert main([*train, "--kind", "lstm"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no valid split" in err

"""Word-level LMs: the Transformer reaches the lowest perplexity (RNN / LSTM / Transformer; PubMedQA fine-tuning).

Claim as published:
    Part A: three word-level language models trained on Penn Treebank with the same strategy and
    hyper-parameters: an RNN written from scratch, an LSTM and a Transformer (sinusoidal positions, 8 heads,
    causal mask, feed-forward 4x wider); embedding 256, 4 layers, dropout 0.5, a linear output layer; Adam at
    lr 1e-3, lr halved after 2 epochs without validation improvement, clipping 0.25, batch 20 (validation 10),
    sequences of at most 256, early stopping after 5 epochs. The Transformer converges fastest: final train /
    validation loss 4.0 / 4.6; LSTM 4.5 / 5.1; RNN 4.5 / 5.2. Part B: validation perplexity on WikiText-2,
    Transformer 346.8285 < LSTM 390.0218 < RNN 411.1751; samples from "a" and "the meaning of life is": the
    Transformer most grammatical, coherent and least repetitive, the RNN the most repetitive. Part C: GPT-2
    small fine-tuned on PubMedQA (lr 2e-5, batch 4, 500 warm-up steps, early stopping patience 3): loss 3.09 ->
    2.25 over ~600 steps, perplexity 28.32 -> 8.78 (3.2x).

In English:
    Trained the same way, a small Transformer predicts the next word better than an LSTM, which predicts it
    better than a plain RNN, on both Penn Treebank and WikiText-2. Separately, fine-tuning a pretrained GPT-2
    on biomedical question-answer text makes such text at least twice as predictable (perplexity / 3).

Source:
    Seed report 004, as quoted in the claim-5 issue. Anchors: pytorch/examples word_language_model (its
    Transformer trails its LSTM on WikiText-2 in users' runs); Zaremba et al. 2014 (medium LSTM ~82 test
    perplexity on PTB); the GPT-2 paper (zero-shot WikiText-2 perplexity 29.41 for 117M).

Method:
    PTB and WikiText-2 tokenised by words with <eos> at line ends, a vocabulary from each training split,
    batchify and BPTT windows. The three models (``repro.lm.models``: a hand-written tanh RNN, nn.LSTM, a
    causal Transformer encoder; one forward signature) are trained from the same seed with the seed's recipe
    (``repro.lm.trainer``) at the profile's budget (cpu: 3 epochs over the first 12,000 training tokens, BPTT
    35; gpu: the full recipe to early stopping), and compared by best validation perplexity. Part B is
    reported in both settings: (1) trained on WikiText-2, (2) PTB-trained models reading WikiText-2 through
    PTB's vocabulary (OOV -> <unk>). Samples are drawn by seeded temperature sampling and measured (repeated
    3-gram rate, <unk> rate, distinct-1/2). Part C fine-tunes a pretrained model (smollm2-135m here, gpt2
    where its weights exist) on PubMedQA PQA-L's non-test ids and scores perplexity on its test ids before
    and after (cpu: 16 steps of 256 tokens, 8 held-out blocks; gpu: full split, seed's schedule).

Reproduced when:
    Architectures (row "word-lms"): REPRODUCED when validation perplexity orders Transformer < LSTM < RNN on
    both PTB and WikiText-2 (setting 1) at the profile's budget; PARTIAL when the Transformer is lowest on
    only one corpus, or lowest on both with LSTM and RNN swapped; NOT_REPRODUCED when it is lowest on
    neither. Setting 2, the losses and the samples are reported, not judged. Fine-tuning (one row per
    pretrained model): REPRODUCED when held-out perplexity falls at least 2x; NOT_REPRODUCED otherwise.
"""

import math

import pytest

from repro.lm import run_architectures, run_finetune
from repro.verdicts import Claim, Verdict

CLAIM = Claim.parse(__doc__, key="perplexity", number=5)

R, P, N = Verdict.REPRODUCED, Verdict.PARTIAL, Verdict.NOT_REPRODUCED
ARCHITECTURES = "word-lms"  # the three models trained from scratch: a row name, not a registered model
EXPECTED = {  # subject: {profile: declared verdict}
    # Measured at cpu (3 epochs over 12k tokens, BPTT 35; perplexities ~1,000-2,000, barely past unigram level):
    # PTB LSTM 970 < RNN 1014 < Transformer 1109; WikiText-2 RNN 1933 < Transformer 2023 < LSTM 2079. The Transformer
    # is lowest on neither corpus. gpu is declared, not measured (no GPU here): in users' full runs of
    # pytorch/examples the LSTM beats the Transformer on WikiText-2, so the claim is not expected to hold there either.
    ARCHITECTURES: {"cpu": N, "gpu": N},
    # Declared, not measured (no weights here): 16 steps at lr 2e-5 cannot halve perplexity; at gpu, the seed's
    # schedule on the full split is what the seed reports as 3.2x.
    "gpt2": {"cpu": N, "gpu": R},
    # Measured at cpu: 18.74 -> 17.20 (1.09x) on 8 held-out blocks after 16 steps. gpu declared, not measured: the
    # instruct model starts far below GPT-2's 28.3, leaving less to gain.
    "smollm2-135m": {"cpu": N, "gpu": N},
}
FINETUNED = ("gpt2", "smollm2-135m")
PERPLEXITY_REL = 1e-2  # see test_numbers_match_snapshot


@pytest.fixture(scope="module")
def architectures(run_claim):
    return run_claim(CLAIM, ARCHITECTURES, EXPECTED, lambda _, profile, out: run_architectures(profile.lm, out),
                     data=("ptb", "wikitext-2"), pretrained=False)


@pytest.fixture(scope="module", params=FINETUNED)
def finetuned(request, run_claim, profile):
    return run_claim(CLAIM, request.param, EXPECTED,
                     lambda lm, profile, out: run_finetune(lm, profile.lm.finetune, out, device=profile.device),
                     data=("pubmedqa",))


def test_numbers_match_snapshot(architectures, check_snapshot):
    # Training sums thousands of float32 products whose order depends on the thread count; one epoch moves
    # losses by ~1e-8 between 1 and 2 threads, and training can amplify that, so perplexities compare at 1%.
    check_snapshot(architectures, architectures.result.snapshot(), rel=PERPLEXITY_REL)


def test_finetune_numbers_match_snapshot(finetuned, check_snapshot):
    check_snapshot(finetuned, finetuned.result.snapshot(), rel=PERPLEXITY_REL)


def test_verdict_is_the_declared_one(architectures):
    assert architectures.record.verdict == architectures.record.expected, architectures.record.summary()


def test_finetune_verdict_is_the_declared_one(finetuned):
    assert finetuned.record.verdict == finetuned.record.expected, finetuned.record.summary()


def test_every_model_learned(architectures):
    # Better than guessing uniformly over the vocabulary, on every corpus and in both Part B settings.
    result = architectures.result
    for corpus, by_kind in result.val_ppl.items():
        assert all(ppl < 0.5 * result.vocab_sizes[corpus] for ppl in by_kind.values()), (corpus, by_kind)
    assert all(ppl < 0.5 * result.vocab_sizes["ptb"] for ppl in result.cross_ppl.values()), result.cross_ppl
    for by_kind in result.runs.values():
        assert all(r.epochs[-1]["train_loss"] < math.log(result.vocab_sizes["ptb"]) for r in by_kind.values())


def test_samples_are_reproducible_words(architectures):
    result = architectures.result
    for by_prompt in result.samples.values():
        for samples in by_prompt.values():
            assert len(samples) == result.settings.samples_per_prompt
            assert all(len(s) == result.settings.sample_words for s in samples)
    assert all(0 <= s.unk_rate < 0.5 and 0 < s.distinct_1 <= 1 for s in result.sample_stats.values())


def test_finetuning_lowered_held_out_perplexity(finetuned):
    m = finetuned.result.measured
    assert math.isfinite(m.ppl_before) and m.ppl_after < m.ppl_before, (m.ppl_before, m.ppl_after)
    assert m.generation_before and m.generation_after

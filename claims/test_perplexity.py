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
    better than a plain RNN, and it gets there fastest. Separately, fine-tuning a pretrained GPT-2 on biomedical
    question-answer text makes such text about three times as predictable.

Source:
    Seed report 004, as quoted in the claim-5 issue. Anchors: pytorch/examples word_language_model (its
    Transformer trails its LSTM on WikiText-2 in users' runs); Zaremba et al. 2014 (medium LSTM ~82 test
    perplexity on PTB); the GPT-2 paper (zero-shot WikiText-2 perplexity 29.41 for 117M).

Method:
    PTB tokenised by words with <eos> at line ends; one vocabulary, PTB's 10k words. The three models
    (``repro.lm.models``: a hand-written tanh RNN, nn.LSTM, a causal Transformer encoder; one forward signature)
    train from the same seeds with one recipe (``repro.lm.trainer``). cpu: each model reads the first 130,000 PTB
    training tokens once (fresh tokens, no repeated epochs; BPTT 35, batch 20, Adam 1e-3, clipping 0.25), is
    validated every 26,000 tokens on a selection slice (the last 6,000 validation tokens: learning curves, best
    round, the recipe's lr halving and early stopping), and is scored on the first 24,000 validation tokens, two
    training seeds per model. Trade-off: the seed's sizes (d256 x 4 layers, dropout 0.5) read ~60k tokens per seed
    in this budget, ~90 Adam steps, too few for the recurrent models to pass a unigram (measured: RNN 778, LSTM 800
    vs unigram 760 after 100k tokens at d128 with dropout 0.5); the cpu models are half as wide and deep (d128 x 2),
    without dropout (a single pass over fresh tokens cannot overfit), and their output bias starts at the log
    unigram frequencies of the training tokens (all three alike), so the budget goes to learning context; the gpu
    profile runs the seed's sizes and recipe (both corpora, BPTT 256, dropout 0.5, lr halving, early stopping, 3
    seeds). A unigram (add-one) and a Kneser-Ney bigram are counted from the same training tokens and score the
    same tokens. Part B: the PTB models read 24,000 tokens of WikiText-2 validation text rewritten in PTB's
    conventions (lower case, numbers -> N, punctuation dropped, a sentence a line; ~10% of the words are outside
    PTB's vocabulary); models trained on WikiText-2 (the seed's setting) run in the gpu profile. Samples from the
    PTB models with the seed's two prompts, measured (repeated 3-gram rate, <unk> rate, distinct-1/2). Part C
    fine-tunes a pretrained model (smollm2-135m here, gpt2 where its weights exist) with LoRA (r 16 on every
    linear projection, lr 5e-4, 52 steps of 256 tokens) on PubMedQA PQA-L's non-test ids and scores the same
    tokens before and after: 20 blocks spread over its test ids, split into template tokens (Question: /
    Context: / Answer: / end-of-text) and content tokens, and 20 WikiText-2 validation blocks as a control.

Reproduced when:
    Architectures (row "word-lms"). Statistic: the perplexity ratio other ÷ Transformer (exp of the mean
    paired per-token loss difference, losses averaged over the training seeds) for the LSTM and the RNN, in
    three groups: PTB ordering (reported validation tokens), WikiText-2 ordering (Part B tokens), and converges
    fastest (selection-slice loss at every validation round, equal tokens seen, averaged over the rounds all runs
    share). Unit of independence: validation segments of 250 tokens; interval: 95% BCa block bootstrap over them
    (repro.intervals.block_bootstrap_estimate). A group is REPRODUCED when both ratios' intervals lie above 1 and
    both ratios are at least 1.03 (the Transformer lower by >= 3%); NOT_REPRODUCED when another model is lower with
    its interval below 1; INCONCLUSIVE otherwise. The groups combine by repro.verdicts.combine_parts: all
    REPRODUCED -> REPRODUCED; all NOT_REPRODUCED -> NOT_REPRODUCED; any INCONCLUSIVE -> INCONCLUSIVE; else
    PARTIAL. Gate, per model: it beats the unigram, i.e. the unigram ÷ model ratio's interval lies above 1 for
    every seed on both evaluation sets; a model that does not makes the verdict INCONCLUSIVE, naming it. The
    bigram, the losses and the samples are reported, not judged. Seed variance: two seeds at cpu (three at gpu)
    are shown per seed; the interval covers the validation text.
    Fine-tuning (one row per pretrained model). Statistic: the content-token perplexity factor, before ÷ after,
    on the held-out PubMedQA blocks; unit: held-out blocks (spread over the test records); interval: 95% BCa
    bootstrap over blocks. The control: the same factor on WikiText-2 blocks; the factor net of the control
    (content ÷ control) is bootstrapped over block pairs. Smallest effect of interest: 2x (the seed's 3.2x over
    all tokens lies well above it). NOT_REPRODUCED when the content-token factor's interval lies below 2;
    REPRODUCED when it and the net factor both lie above 2; INCONCLUSIVE otherwise. Gate: the fine-tune took (the
    template tokens' factor lies above 1).
"""

import math

import pytest

from repro.lm import run_architectures, run_finetune
from repro.results import profile_dir
from repro.verdicts import Claim, Verdict

CLAIM = Claim.parse(__doc__, key="perplexity", number=5)

R, P, N, INC = Verdict.REPRODUCED, Verdict.PARTIAL, Verdict.NOT_REPRODUCED, Verdict.INCONCLUSIVE
ARCHITECTURES = "word-lms"  # the three models trained from scratch: a row name, not a registered model
EXPECTED = {  # subject: {profile: declared verdict}
    # Measured at cpu (d128 x 2, 130k fresh PTB tokens, 2 seeds; other ÷ Transformer perplexity, 95% BCa block-
    # bootstrap intervals over 96 segments of 250 tokens): PTB LSTM 1.325 [1.295, 1.356], RNN 1.116 [1.099, 1.133];
    # WikiText-2 in PTB conventions LSTM 1.129 [1.116, 1.143], RNN 1.032 [1.021, 1.043]; converges fastest (24
    # selection segments, 5 rounds) LSTM 1.340 [1.293, 1.406], RNN 1.132 [1.103, 1.174]: all three groups
    # REPRODUCED. Every model beats the unigram (PTB 708.1: Transformer 393.6, RNN 439.3, LSTM 521.7); none beats the
    # KN bigram (348.7) on PTB. gpu is declared, not measured (no GPU here): in users' full runs of pytorch/examples
    # the LSTM beats the Transformer on WikiText-2.
    ARCHITECTURES: {"cpu": R, "gpu": N},
    # Declared, not measured (no weights here): 52 LoRA steps cannot make content tokens 2x more predictable; the
    # gpu profile runs the seed's full fine-tune, which the seed reports at 3.2x over all tokens.
    "gpt2": {"cpu": N, "gpu": R},
    # Measured at cpu (20 held-out blocks): content tokens 1.206 [1.185, 1.230]x, below 2x (template tokens 142x,
    # all tokens 1.346x); WikiText-2 control 1.079 [1.061, 1.097]x; content net of the control 1.117 [1.089, 1.149]x.
    # gpu declared, not measured: the instruct model starts far below GPT-2's 28.3, leaving less to gain.
    "smollm2-135m": {"cpu": N, "gpu": N},
}
FINETUNED = ("gpt2", "smollm2-135m")
PERPLEXITY_REL = 1e-2  # see test_numbers_match_snapshot


@pytest.fixture(scope="module")
def architectures(run_claim, reports_root):
    def experiment(_, profile, out):
        events = profile_dir(profile.name, reports_root) / "tensorboard"  # beside results/ and figures/
        return run_architectures(profile.lm, out, device=profile.device, tensorboard_dir=events, profile=profile.name)

    return run_claim(CLAIM, ARCHITECTURES, EXPECTED, experiment, data=("ptb", "wikitext-2"), pretrained=False)


@pytest.fixture(scope="module", params=FINETUNED)
def finetuned(request, run_claim, profile):
    return run_claim(CLAIM, request.param, EXPECTED,
                     lambda lm, profile, out: run_finetune(lm, profile.lm.finetune, out, device=profile.device),
                     data=("pubmedqa", "wikitext-2"))


def test_numbers_match_snapshot(architectures, check_snapshot):
    # Training sums thousands of float32 products whose order depends on the thread count; a round moves
    # losses by ~1e-8 between 1 and 2 threads, and training can amplify that, so perplexities compare at 1%.
    check_snapshot(architectures, architectures.result.snapshot(), rel=PERPLEXITY_REL)


def test_finetune_numbers_match_snapshot(finetuned, check_snapshot):
    check_snapshot(finetuned, finetuned.result.snapshot(), rel=PERPLEXITY_REL)


def test_verdict_is_the_declared_one(architectures):
    assert architectures.record.verdict == architectures.record.expected, architectures.record.summary()


def test_finetune_verdict_is_the_declared_one(finetuned):
    assert finetuned.record.verdict == finetuned.record.expected, finetuned.record.summary()


def test_models_learned_from_their_tokens(architectures):
    # Far below uniform guessing, and the training loss fell from the first round to the last in every run.
    result = architectures.result
    for e in result.evaluations.values():
        assert all(e.ppl(k, s) < 0.2 * result.vocab_sizes[e.trained_on] for k in e.losses for s in e.losses[k]), e.name
    for by_kind in result.runs.values():
        assert all(r.rounds[-1]["train_loss"] < r.rounds[0]["train_loss"] for by_seed in by_kind.values()
                   for r in by_seed.values())


def test_baselines_score_the_same_tokens_and_the_bigram_beats_the_unigram(architectures):
    for e in architectures.result.evaluations.values():
        assert all(len(x) == e.tokens for x in e.baselines.values())
        assert e.baseline_ppl("kn_bigram") < e.baseline_ppl("unigram"), e.name


def test_samples_are_reproducible_words(architectures):
    result = architectures.result
    for by_prompt in result.samples.values():
        for samples in by_prompt.values():
            assert len(samples) == result.settings.samples_per_prompt
            assert all(len(s) == result.settings.sample_words for s in samples)
    assert all(0 <= s.unk_rate < 0.5 and 0 < s.distinct_1 <= 1 for s in result.sample_stats.values())


def test_finetuning_scored_the_same_tokens_and_lowered_the_loss(finetuned):
    m = finetuned.result.measured
    assert m.held_before.shape == m.held_after.shape and m.control_before.shape == m.control_after.shape
    assert math.isfinite(m.loss_before) and m.loss_after < m.loss_before, (m.ppl_before, m.ppl_after)
    assert m.generation_before and m.generation_after

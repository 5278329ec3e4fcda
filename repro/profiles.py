"""Run profiles: how big each experiment is, on which device, and which models must be present.

``cpu`` verifies every claim on a laptop in minutes; ``gpu`` runs them at paper scale. A profile is
chosen by ``--profile`` (pytest) or ``$REPRO_PROFILE``; ``cpu`` is the default. ``$REPRO_OPTIONAL_MODELS``
(comma-separated keys, e.g. ``gpt2``) makes required models optional for one run: a GPU machine without
GPT-2's weights then records those claims as NOT_RUN with the reason instead of failing the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

PROFILE_ENV = "REPRO_PROFILE"
OPTIONAL_ENV = "REPRO_OPTIONAL_MODELS"


@dataclass(frozen=True)
class SplitSettings:
    """Claim 3, split learning (seed 002): timing at the seed's shape plus sweeps."""

    cut: int = 2  # blocks in Bottom and in Top
    seq_len: int = 6  # the seed's [1, 6, 768] input
    warmup: int = 10  # calls of each part before timing
    pairs: int = 41  # interleaved Bottom/Top timing pairs (>= 30)
    seq_lens: tuple[int, ...] = (1, 2, 4, 6, 8, 16, 32, 64, 128, 256, 512)
    sweep_pairs: int = 11  # pairs per point of the sequence-length and thread sweeps
    threads: tuple[int, ...] = (1, 2)
    # Threads for the headline timing. On a small shared CPU, using every core lets any other process stall
    # Bottom's many small ops more than Top's one big matmul, biasing the ratio down (measured: 1.6-2.3 under
    # load vs 4.0 quiet at 2 threads; 3.5 either way at 1 thread). None = torch's default (all cores).
    timing_threads: int | None = 1


@dataclass(frozen=True)
class IOISettings:
    """Claim 1, IOI activation patching (seed 000)."""

    n_pairs: int = 40  # generated prompt pairs before filtering (the seed used 100)
    pair_seed: int = 0  # the prompt-pair generator's seed (repro.ioi.dataset.generate_pairs)
    corruption: str = "s2_swap"  # the seed's: S2 <- IO, flipping the answer ("abc": three unrelated names)


@dataclass(frozen=True)
class SDCSettings:
    """Claim 4, silent data corruption caught by attention bounds (seed 003)."""

    sweep: str = "stratified"  # the template (repro.sdc.sweeps.TEMPLATES)
    # Faults per stratum (repro.sdc.strata), replacing the template's counts; None: the template's. Sized so
    # that each model gives >= 400 harmful faults within the module's cpu budget.
    strata: tuple[tuple[str, int], ...] | None = None
    seeds: tuple[int, ...] = (0, 1, 2)  # grid templates (bit_sweep: the seed's medium experiment uses 4)
    window_len: int = 16  # tokens per WikiText-2 window
    n_windows: int = 8  # windows the faults are spread over
    # Injected layers at these relative depths (None: every layer); each fault runs from its layer on.
    layer_depths: tuple[float, ...] | None = (0.0, 0.5, 1.0)
    clean_calls: int = 1000  # clean attention calls (layers x windows) checked for false positives
    batch_size: int = 32  # faults per forward pass (one per batch row)
    dtype: str | None = None  # the model's dtype for this claim (None: the profile's)
    companion_share: float = 0.25  # DistilBERT (random init, bidirectional): this share of the sweep; 0: none


@dataclass(frozen=True)
class FinetuneSettings:
    """Claim 5 Part C: a pretrained causal LM fine-tuned on PubMedQA (seed 004: GPT-2 small, every weight, lr 2e-5,
    batch 4, 500 warm-up steps, early stopping patience 3, ~600 steps). The cpu budget buys LoRA instead: 52
    steps of 256 tokens at lr 5e-4 train ~1% of the weights in about 2 minutes on 2 cores."""

    method: str = "lora"  # "lora" (adapters on every linear projection) or "full" (every weight, the seed's)
    lora_r: int = 16
    lora_alpha: int = 32  # LoRA's update is scaled by alpha / r
    seq_len: int = 256  # tokens per block of the packed question + context + long answer stream
    batch_size: int = 1  # the seed's 4 costs 4x per step; the cpu budget buys more steps at 1
    max_steps: int | None = 52  # None: epochs until early stopping
    max_epochs: int = 3
    lr: float = 5e-4  # LoRA's usual order; the seed's 2e-5 is for updating every weight
    warmup_steps: int = 5  # ~10% of the steps, as the seed's 500 were of its run
    eval_blocks: int | None = 20  # reported held-out blocks, spread over the test records (None: all of them)
    select_blocks: int = 0  # training blocks kept aside for early stopping (0: none, no early stopping)
    eval_every: int | None = None  # steps between selection evaluations (None: no early stopping)
    patience: int = 3  # selection evaluations without improvement before stopping (the seed's)
    new_tokens: int = 40  # greedy continuation of the seed's prompt, before and after
    data_seed: int = 0  # order of the training blocks, LoRA's initial A matrices


@dataclass(frozen=True)
class LMSettings:
    """Claim 5 (seed 004): RNN / LSTM / Transformer word LMs trained with one recipe; Part C fine-tuning.

    cpu: each model reads the first ``train_tokens`` PTB training tokens once (fresh tokens, no repeated epochs),
    validated every ``eval_every_tokens``; models of half the seed's width and depth, without dropout (one pass
    cannot overfit) and with the output bias starting at the unigram (see claims/test_perplexity.py for the
    trade-off). gpu: the seed's recipe on both corpora."""

    corpora: tuple[str, ...] = ("ptb",)  # training corpora; Part B reads WikiText-2 through the PTB models at cpu
    d_model: int = 128  # the seed: embedding 256, 4 layers, dropout 0.5
    n_layers: int = 2
    dropout: float = 0.0
    output_bias: str = "unigram"  # "unigram": log add-one frequencies of the training tokens; "zero": the seed's
    seq_len: int = 35  # BPTT window (the seed's maximum 256 buys too few optimizer steps on a CPU budget)
    train_tokens: int | None = 130_000  # prefix of the training split (None: all of it)
    max_epochs: int = 1  # passes over the training tokens (the seed: until early stopping)
    eval_every_tokens: int | None = 26_000  # training tokens between validations (None: once per epoch)
    select_tokens: int = 6_000  # selection slice: the last tokens of the validation split (curves, best round)
    report_tokens: int | None = 24_000  # reported slice: the first validation tokens (None: all before the selection slice)
    part_b_tokens: int | None = 24_000  # WikiText-2 validation tokens for Part B (None: all)
    segment_tokens: int = 250  # unit of the block bootstrap over validation text (~10 PTB sentences)
    seeds: tuple[int, ...] = (0, 1)  # training seeds per model (initial weights, dropout)
    batch_size: int = 20
    eval_batch_size: int = 10
    lr: float = 1e-3  # Adam
    clip: float = 0.25  # gradient-norm clipping
    lr_patience: int = 2  # validations without improvement before the lr is halved
    stop_patience: int = 5  # validations without improvement before training stops
    log_every: int = 10  # batches between loss reports (the seed's 50 is more than a cpu round)
    sample_words: int = 40  # words generated per sample
    samples_per_prompt: int = 4
    temperature: float = 1.0
    sample_seed: int = 0
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)


@dataclass(frozen=True)
class HybridSettings:
    """Claim 6, hybrid placement (seed 000's pipeline on Dask over a shaped link; ``repro.placement``)."""

    n_pairs: int = 4  # IOI pairs through the pipeline (the seed used 100): a Local run is ~7 s on a quiet core
    pair_seed: int = 0
    # tbf rates measured, both directions, in this order. The first is the seed's link: the seed's own means
    # put 20% of Remote's time on the network, which with this pipeline's bytes is ~0.4 Mbit/s (their
    # consistency check fits 0.36); the claim is decided there. The second is broadband: the link is noise.
    rates_mbit: tuple[float, ...] = (0.4, 20.0)
    validate_rate_mbit: float = 200.0  # where the placements that ship the activation cache (~36 MB) run
    validate: int = 2  # cache-shipping placements run once each to check the cost model
    latency_ms: float = 0.0  # cost model only (no netem here)
    # The seed's sites: Collect 2.1 / 0.7 s and Patch 3.2 / 1.1 s local / remote (~3x); Filter and Plot no
    # faster remote. The workstation runs the throttled stages under a CFS quota of 1/local_slowdown of a core.
    local_slowdown: float = 3.0
    throttled_stages: tuple[str, ...] = ("collect", "patch")
    local_threads: int = 1  # the workstation
    remote_threads: int = 1  # the remote machine: one pinned core of its own
    local_device: str = "cpu"
    remote_device: str = "cpu"
    rounds: int = 6  # Remote/Hybrid rounds per rate, in ABBA order, after one unrecorded warm-up per mode
    local_rounds: int = 3  # rounds that also run Local (paired with that round's Hybrid)
    site_lost_s: float = 60.0  # how long a dead site's worker may stay away before the run stops
    connect_timeout_s: float = 10.0  # an existing scheduler that does not answer within this is unreachable


@dataclass(frozen=True)
class GradSimSettings:
    """Claim 2, GradSim vs ripple (seed 001): knowledge pieces, GradSim, MEMIT edits, correlation."""

    # cpu sizes keep the module within ~5 min on 2 cores with a warm covariance cache: the edits dominate (20
    # Adam steps through the 19 blocks above the edit, batched; then each edit's ripple on every piece), so
    # the cpu profile uses 36 edits (>= 30 valid with room to spare) and 2 generated context prefixes (3
    # contexts; MEMIT: 6); 20,480 covariance tokens from 160 articles (13 x d_mlp for SmolLM2).
    hotpot_examples: int = 24  # HotpotQA examples read (the seed's --max_samples); descriptive pieces
    max_experiments: int = 36  # MEMIT edits attempted, on known facts
    edit_batch: int = 36  # edits whose target vectors are optimised together
    mom2_tokens: int = 20_480  # WikiText-2 train tokens for the covariance of the down-projection inputs
    mom2_seq_len: int = 128  # tokens per article window (mom2_tokens / mom2_seq_len articles)
    v_num_grad_steps: int = 20  # Adam steps for the target vector z (MEMIT: 20-25)
    context_templates: int = 2  # generated context prefixes besides the bare prompt (MEMIT: 5)
    context_length: int = 10  # tokens of each generated context template (MEMIT: 10)
    n_permutations: int = 2_000  # joint piece-label permutations for the p-value
    n_bootstrap: int = 2_000  # two-way (edits x pieces) bootstrap resamples
    seed: int = 0  # edit choice, counterfactual targets, covariance articles, permutations, bootstrap


@dataclass(frozen=True)
class Profile:
    name: str
    device: str
    dtype: str
    required_models: tuple[str, ...]  # missing -> the run fails
    optional_models: tuple[str, ...]  # missing -> NOT_RUN with the reason, in the report
    split: SplitSettings = field(default_factory=SplitSettings)
    ioi: IOISettings = field(default_factory=IOISettings)
    sdc: SDCSettings = field(default_factory=SDCSettings)
    lm: LMSettings = field(default_factory=LMSettings)
    hybrid: HybridSettings = field(default_factory=HybridSettings)
    gradsim: GradSimSettings = field(default_factory=GradSimSettings)

    def requires(self, model_key: str) -> bool:
        return model_key in self.required_models


PROFILES: dict[str, Profile] = {
    "cpu": Profile(
        name="cpu",
        device="cpu",
        dtype="float32",
        required_models=("gpt2-random", "smollm2-135m"),
        optional_models=("gpt2",),
    ),
    "gpu": Profile(
        name="gpu",
        device="cuda",
        dtype="float32",
        required_models=("gpt2", "gpt2-random", "smollm2-135m"),
        optional_models=(),
        split=SplitSettings(pairs=101, sweep_pairs=31, threads=(1, 2, 4, 8), timing_threads=None),
        ioi=IOISettings(n_pairs=200),
        sdc=SDCSettings(window_len=128, n_windows=16, layer_depths=None, clean_calls=4000, batch_size=64,
                        dtype="bfloat16", strata=(("uniform", 1024), ("exp_up", 2048), ("sign_sink", 2048),
                                                  ("sign_argmax", 512), ("top2", 512), ("masked", 512))),
        # The seed's recipe: its sizes, both corpora, BPTT 256, validation every epoch, lr halving and early
        # stopping, 3 seeds. Part C fine-tunes every weight as the seed did (7 epochs of batch 4 ~ its 600 steps, 500
        # of them warm-up), early-stopping on training records kept aside.
        lm=LMSettings(corpora=("ptb", "wikitext2"), d_model=256, n_layers=4, dropout=0.5, output_bias="zero",
                      seq_len=256, train_tokens=None, max_epochs=40, eval_every_tokens=None, select_tokens=20_000,
                      report_tokens=None, part_b_tokens=None, segment_tokens=500, seeds=(0, 1, 2), log_every=50,
                      finetune=FinetuneSettings(method="full", seq_len=512, batch_size=4, max_steps=None, max_epochs=7,
                                                lr=2e-5, warmup_steps=500, eval_blocks=None, select_blocks=32,
                                                eval_every=100)),
        # The remote site is a GPU: the hardware makes the difference, no quota; more pairs, rounds and rates.
        hybrid=HybridSettings(n_pairs=16, rates_mbit=(0.4, 20.0, 200.0), validate_rate_mbit=1000.0,
                              local_slowdown=1.0, remote_device="cuda", rounds=10, local_rounds=4),
        # The seed's larger settings: every HotpotQA example here, 100 edits, MEMIT-sized statistics.
        gradsim=GradSimSettings(hotpot_examples=103, max_experiments=100, edit_batch=50, mom2_tokens=204_800,
                                mom2_seq_len=512, context_templates=5, n_permutations=10_000, n_bootstrap=5_000),
    ),
}


def get_profile(name: str | None = None) -> Profile:
    """The named profile, else ``$REPRO_PROFILE``, else ``cpu``; unknown names list the valid ones.
    Models named in ``$REPRO_OPTIONAL_MODELS`` are moved from required to optional."""
    name = name or os.environ.get(PROFILE_ENV) or "cpu"
    try:
        profile = PROFILES[name]
    except KeyError:
        raise ValueError(f"Unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}.") from None
    return with_optional_models(profile, os.environ.get(OPTIONAL_ENV, ""))


def with_optional_models(profile: Profile, keys: str) -> Profile:
    """``profile`` with the comma-separated model ``keys`` optional (missing -> NOT_RUN, not a failure)."""
    wanted = [k.strip() for k in keys.split(",") if k.strip()]
    known = profile.required_models + profile.optional_models
    unknown = [k for k in wanted if k not in known]
    if unknown:
        raise ValueError(
            f"${OPTIONAL_ENV} names {', '.join(map(repr, unknown))}, not a model of profile {profile.name!r}; "
            f"valid: {', '.join(known)}."
        )
    moved = tuple(k for k in profile.required_models if k in wanted)
    return replace(
        profile,
        required_models=tuple(k for k in profile.required_models if k not in moved),
        optional_models=profile.optional_models + moved,
    )

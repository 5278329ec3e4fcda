"""Run profiles: how big each experiment is, on which device, and which models must be present.

``cpu`` verifies every claim on a laptop in minutes; ``gpu`` runs them at paper scale. A profile is
chosen by ``--profile`` (pytest) or ``$REPRO_PROFILE``; ``cpu`` is the default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

PROFILE_ENV = "REPRO_PROFILE"


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
    seed: int = 0
    corruption: str = "s2_swap"  # the seed's: S2 <- IO, flipping the answer ("abc": three unrelated names)


@dataclass(frozen=True)
class GradSimSettings:
    """Claim 2, GradSim vs ripple (seed 001): knowledge pieces, GradSim, MEMIT edits, correlation."""

    # cpu sizes keep the module within ~5 min on 2 cores with a cold covariance cache: the edits dominate
    # (each runs 20 Adam steps through the 19 blocks above the edit), so the cpu profile uses 8 edits and
    # 2 generated context prefixes (3 contexts; MEMIT: 6) and 6k covariance tokens (> d_mlp = 1536 for SmolLM2).
    hotpot_examples: int = 24  # HotpotQA examples read (the seed's --max_samples)
    fact_chains: int | None = None  # chains read from the known-facts fixture (None: all)
    max_experiments: int = 8  # MEMIT edits attempted, split evenly between the two sources
    mom2_tokens: int = 6_000  # WikiText-2 train tokens for the covariance of the down-projection inputs
    v_num_grad_steps: int = 20  # Adam steps for the target vector z (MEMIT: 20-25)
    context_templates: int = 2  # generated context prefixes besides the bare prompt (MEMIT: 5)
    context_length: int = 10  # tokens of each generated context template (MEMIT: 10)
    n_permutations: int = 2_000  # within-edit permutations for the p-value
    n_bootstrap: int = 1_000  # cluster-bootstrap resamples over edits
    seed: int = 0  # edit choice, counterfactual targets, permutations, bootstrap


@dataclass(frozen=True)
class Profile:
    name: str
    device: str
    dtype: str
    required_models: tuple[str, ...]  # missing -> the run fails
    optional_models: tuple[str, ...]  # missing -> NOT_RUN with the reason, in the report
    split: SplitSettings = field(default_factory=SplitSettings)
    ioi: IOISettings = field(default_factory=IOISettings)
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
        # The seed's larger settings: every HotpotQA example here, 100 edits, MEMIT-sized statistics.
        gradsim=GradSimSettings(hotpot_examples=103, max_experiments=100, mom2_tokens=200_000, context_templates=5,
                                n_permutations=10_000),
    ),
}


def get_profile(name: str | None = None) -> Profile:
    """The named profile, else ``$REPRO_PROFILE``, else ``cpu``; unknown names list the valid ones."""
    name = name or os.environ.get(PROFILE_ENV) or "cpu"
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"Unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}.") from None

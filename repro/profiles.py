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
    seed: int = 0
    corruption: str = "s2_swap"  # the seed's: S2 <- IO, flipping the answer ("abc": three unrelated names)


@dataclass(frozen=True)
class Profile:
    name: str
    device: str
    dtype: str
    required_models: tuple[str, ...]  # missing -> the run fails
    optional_models: tuple[str, ...]  # missing -> NOT_RUN with the reason, in the report
    split: SplitSettings = field(default_factory=SplitSettings)
    ioi: IOISettings = field(default_factory=IOISettings)

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

"""Sweeps: the seed's ``ExperimentConfig`` / ``ParameterSweepConfig`` / ``ConfigTemplates`` and its
results log, resumable and order-independent.

A sweep is a grid (bits x locations x seeds); each point becomes one ``ExperimentConfig`` whose layer,
window and element index are drawn from a generator seeded by the point itself, so a configuration's
fault does not depend on which others run, or in which order. Configurations on the same window and
layer run as one batch (``experiments.run_faults``), in chunks fixed by the sorted configuration ids.
``ResultsLog`` writes each finished configuration to its own JSON file at once (atomically), so a killed
sweep resumes with the configurations it lacks and loses none; a chunk with any configuration missing is
rerun whole, which reproduces the ones already there.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from repro.files import write_json_atomic
from repro.sdc.injection import LOCATIONS, InjectionConfig


@dataclass(frozen=True, order=True)
class ExperimentConfig:
    """One fault of a sweep: where (location, layer, window) and what (bits; index drawn from ``seed``)."""

    location: str
    bits: tuple[int, ...]
    seed: int
    layer: int
    window: int
    index: tuple[int, ...] | None = None  # None: drawn from the seed
    probability: float = 1.0

    @property
    def id(self) -> str:
        at = "" if self.index is None else "-i" + "_".join(map(str, self.index))
        return f"{self.location}-b{'_'.join(map(str, self.bits))}-s{self.seed}-L{self.layer}-w{self.window}{at}"

    def injection(self) -> InjectionConfig:
        # A random element index is drawn at run time from this seed (the site's shape is known only then).
        return InjectionConfig(self.location, self.layer, self.bits, index=self.index, probability=self.probability,
                               seed=_stable_seed(self.id))


def _stable_seed(text: str) -> int:
    return random.Random(text).getrandbits(31)  # Random(str) hashes with sha512: stable across processes


@dataclass(frozen=True)
class ParameterSweepConfig:
    """A grid of faults: every bit x location x seed; ``layers`` None = all layers of the model."""

    name: str
    bits: tuple[int, ...] = tuple(range(32))
    locations: tuple[str, ...] = tuple(LOCATIONS)
    seeds: tuple[int, ...] = (0, 1, 2)
    layers: tuple[int, ...] | None = None
    n_windows: int = 8  # windows the faults are spread over

    def __post_init__(self):
        unknown = [loc for loc in self.locations if loc not in LOCATIONS]
        if unknown:
            raise ValueError(f"Unknown location(s) {unknown}; valid locations: {', '.join(LOCATIONS)}.")
        if not (self.bits and self.locations and self.seeds) or self.n_windows < 1:
            raise ValueError(f"Sweep {self.name!r} is empty: it needs bits, locations, seeds and n_windows >= 1.")

    def configs(self, n_layers: int) -> list[ExperimentConfig]:
        layers = self.layers if self.layers is not None else tuple(range(n_layers))
        bad = [la for la in layers if not 0 <= la < n_layers]
        if bad:
            raise ValueError(f"Sweep {self.name!r}: layer(s) {bad} outside 0..{n_layers - 1} for this model.")
        out = []
        for bit in self.bits:
            for location in self.locations:
                for seed in self.seeds:
                    rng = random.Random(f"{self.name}:{seed}:{location}:{bit}")
                    out.append(ExperimentConfig(location, (bit,), seed, rng.choice(layers), rng.randrange(self.n_windows)))
        return sorted(out)

    def save(self, path: str | Path) -> Path:
        return write_json_atomic(path, asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> ParameterSweepConfig:
        data = json.loads(Path(path).read_text())
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
        except TypeError as err:
            raise ValueError(f"{path} is not a sweep config ({err}).") from None


# The seed's ConfigTemplates. `bit_sweep` is its medium experiment: 32 bits x 6 locations x 4 seeds = 768.
TEMPLATES = {
    "bit_sweep": ParameterSweepConfig("bit_sweep", seeds=(0, 1, 2, 3)),
    "location_sweep": ParameterSweepConfig("location_sweep", bits=(30, 31, 22), seeds=tuple(range(8))),
    "exponent_sweep": ParameterSweepConfig("exponent_sweep", bits=tuple(range(23, 31)), seeds=(0, 1, 2, 3)),
    "smoke": ParameterSweepConfig("smoke", bits=(0, 22, 30, 31), seeds=(0,), n_windows=2),
}


def template(name: str, **overrides) -> ParameterSweepConfig:
    if name not in TEMPLATES:
        raise ValueError(f"Unknown sweep template {name!r}; valid templates: {', '.join(TEMPLATES)}.")
    return replace(TEMPLATES[name], **overrides)


@dataclass
class ResultsLog:
    """One JSON file per finished configuration under ``folder`` (the seed's ResultsLogger)."""

    folder: Path
    _done: set[str] = field(default_factory=set)

    def __post_init__(self):
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._done = {p.stem for p in self.folder.glob("*.json")}

    def has(self, config: ExperimentConfig) -> bool:
        return config.id in self._done

    def write(self, config: ExperimentConfig, result: dict) -> None:
        write_json_atomic(self.folder / f"{config.id}.json", {"id": config.id, **result})
        self._done.add(config.id)

    def read(self, configs: Iterable[ExperimentConfig]) -> list[dict]:
        return [json.loads((self.folder / f"{c.id}.json").read_text()) for c in sorted(configs)]


def batches(configs: list[ExperimentConfig], size: int) -> Iterator[list[ExperimentConfig]]:
    """Chunks of at most ``size`` configurations sharing window and layer, fixed by the sorted ids."""
    groups: dict[tuple[int, int], list[ExperimentConfig]] = {}
    for config in sorted(configs, key=lambda c: c.id):
        groups.setdefault((config.window, config.layer), []).append(config)
    for key in sorted(groups):
        group = groups[key]
        for start in range(0, len(group), size):
            yield group[start: start + size]


def run_sweep(run_batch, configs: list[ExperimentConfig], log: ResultsLog, *, batch_size: int,
              progress: bool = True) -> list[dict]:
    """Run every configuration the log lacks (``run_batch(chunk) -> results``), then return all results
    in sorted configuration order."""
    todo = [chunk for chunk in batches(configs, batch_size) if not all(log.has(c) for c in chunk)]
    with tqdm(total=len(configs), initial=len(configs) - sum(map(len, todo)), desc="sdc sweep", unit="fault",
              disable=not progress) as bar:
        for chunk in todo:
            for config, result in zip(chunk, run_batch(chunk)):
                if not log.has(config):
                    log.write(config, result)
            bar.update(len(chunk))
    return log.read(configs)

"""Sweeps: the seed's ``ExperimentConfig`` / ``ParameterSweepConfig`` / ``ConfigTemplates``, stratified
sweeps (``repro.sdc.strata``), and the results log, resumable, order-independent and tied to its settings.

A sweep is either the seed's grid (bits x locations x seeds, each fault uniform over its site's elements)
or a stratified draw (so many faults per stratum). Each configuration's layer, window (and, for the grid's
uniform draws, element) come from generators seeded by the configuration itself, so a fault does not
depend on which others run, or in which order. Configurations on the same window and layer run as one
batch, in chunks fixed by the sorted configuration ids.

``ResultsLog`` writes each finished configuration to its own JSON file at once (atomically), so a killed
sweep resumes with the configurations it lacks and loses none; a chunk with any configuration missing is
rerun whole, which reproduces the ones already there (never written twice). The log's ``settings.json``
and every entry carry the settings that made it (model, dtype, window length, profile and the code
version: a hash of the modules that compute a fault's result); a log written with other settings is
refused with one line, or started over when asked (``fresh=True``), never silently reused.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from repro.files import write_json_atomic
from repro.readers import InputError, check_type, read_json
from repro.readers import field as read_field
from repro.sdc.injection import LOCATIONS, InjectionConfig
from repro.sdc.strata import LOCATIONS as STRATUM_LOCATIONS
from repro.sdc.strata import STRATA


@dataclass(frozen=True, order=True)
class ExperimentConfig:
    """One fault of a sweep: its stratum, where (location, layer, window) and what (bits: empty when the
    stratum chooses them; index: None when drawn at run time from ``seed``)."""

    stratum: str
    location: str
    bits: tuple[int, ...]
    seed: int
    layer: int
    window: int
    index: tuple[int, ...] | None = None
    probability: float = 1.0

    @property
    def id(self) -> str:
        at = "" if self.index is None else "-i" + "_".join(map(str, self.index))
        bits = "_".join(map(str, self.bits)) or "auto"
        return f"{self.stratum}-{self.location}-b{bits}-s{self.seed}-L{self.layer}-w{self.window}{at}"

    def injection(self) -> InjectionConfig:
        # The element (and a stratum's bits) are chosen at run time from this seed: the site's values are
        # known only then.
        return InjectionConfig(self.location, self.layer, self.bits, index=self.index, probability=self.probability,
                               seed=_stable_seed(self.id))


def _stable_seed(text: str) -> int:
    return random.Random(text).getrandbits(31)  # Random(str) hashes with sha512: stable across processes


@dataclass(frozen=True)
class ParameterSweepConfig:
    """A grid of faults (every bit x location x seed), or, when ``strata`` is given, so many faults per
    stratum ((stratum, count) pairs); ``layers`` None = all layers of the model."""

    name: str
    bits: tuple[int, ...] = tuple(range(32))
    locations: tuple[str, ...] = tuple(LOCATIONS)
    seeds: tuple[int, ...] = (0, 1, 2)
    layers: tuple[int, ...] | None = None
    n_windows: int = 8  # windows the faults are spread over
    strata: tuple[tuple[str, int], ...] = ()

    def __post_init__(self):
        unknown = [loc for loc in self.locations if loc not in LOCATIONS]
        if unknown:
            raise ValueError(f"Unknown location(s) {unknown}; valid locations: {', '.join(LOCATIONS)}.")
        bad = [s for s, _ in self.strata if s not in STRATA]
        if bad:
            raise ValueError(f"Unknown stratum/strata {bad}; valid strata: {', '.join(STRATA)}.")
        if any(b < 0 for b in self.bits) or any(n < 0 for _, n in self.strata):
            raise ValueError(f"Sweep {self.name!r}: bits and stratum counts must be non-negative.")
        grid = self.bits and self.locations and self.seeds
        if not (grid or sum(n for _, n in self.strata)) or self.n_windows < 1:
            raise ValueError(f"Sweep {self.name!r} is empty: it needs bits, locations and seeds (or strata with "
                             "faults) and n_windows >= 1.")

    def configs(self, n_layers: int, *, width: int = 32, bidirectional: bool = False) -> list[ExperimentConfig]:
        """The sweep's configurations for a model of ``n_layers`` whose floats have ``width`` bits.
        ``bidirectional``: no masked entries without padding, so the masked stratum is left out."""
        layers = self.layers if self.layers is not None else tuple(range(n_layers))
        bad = [la for la in layers if not 0 <= la < n_layers]
        if bad:
            raise ValueError(f"Sweep {self.name!r}: layer(s) {bad} outside 0..{n_layers - 1} for this model.")
        out = []
        if self.strata:
            for stratum, count in self.strata:
                if stratum == "masked" and bidirectional:
                    continue
                for i in range(count):
                    rng = random.Random(f"{self.name}:{stratum}:{i}")
                    location = rng.choice(STRATUM_LOCATIONS[stratum])
                    bits = (rng.randrange(width),) if stratum == "uniform" else ()
                    out.append(ExperimentConfig(stratum, location, bits, i, rng.choice(layers),
                                                rng.randrange(self.n_windows)))
            return sorted(out)
        for bit in self.bits:
            for location in self.locations:
                for seed in self.seeds:
                    rng = random.Random(f"{self.name}:{seed}:{location}:{bit}")
                    out.append(ExperimentConfig("uniform", location, (bit,), seed, rng.choice(layers),
                                                rng.randrange(self.n_windows)))
        return sorted(out)

    def save(self, path: str | Path) -> Path:
        return write_json_atomic(path, self.as_json())

    @classmethod
    def load(cls, path: str | Path) -> ParameterSweepConfig:
        """Read a sweep file (a JSON object with this class's fields) through the checked reader: one line
        naming the file and the field for anything malformed."""
        data = read_json(path, what="sweep file")
        where = f"sweep file {path}"
        check_type(data, dict, where)
        unknown = sorted(set(data) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise InputError(f"{where}: unknown field(s) {unknown}; valid: {', '.join(cls.__dataclass_fields__)}.")
        kwargs: dict = {"name": read_field(data, "name", str, where, default=Path(path).stem)}
        for key in ("bits", "locations", "seeds", "layers"):
            if key in data and not (key == "layers" and data[key] is None):
                kind = str if key == "locations" else int
                items = check_type(data[key], list, f"{where}: field {key!r}")
                kwargs[key] = tuple(check_type(x, kind, f"{where}: field {key!r} entry {i}") for i, x in enumerate(items))
        kwargs["n_windows"] = read_field(data, "n_windows", int, where, default=cls.n_windows)
        if "strata" in data:
            strata = check_type(data["strata"], dict, f"{where}: field 'strata'")
            kwargs["strata"] = tuple((str(s), check_type(n, int, f"{where}: field 'strata' entry {s!r}"))
                                     for s, n in strata.items())
        try:
            return cls(**kwargs)
        except ValueError as err:
            raise InputError(f"{where}: {err}") from None

    def as_json(self) -> dict:
        data = asdict(self)
        data["strata"] = dict(self.strata)
        return data


# The seed's ConfigTemplates. `bit_sweep` is its medium experiment: 32 bits x 6 locations x 4 seeds = 768.
# `stratified` aims at the faults that matter (repro.sdc.strata); the profiles size it.
TEMPLATES = {
    "bit_sweep": ParameterSweepConfig("bit_sweep", seeds=(0, 1, 2, 3)),
    "location_sweep": ParameterSweepConfig("location_sweep", bits=(30, 31, 22), seeds=tuple(range(8))),
    "exponent_sweep": ParameterSweepConfig("exponent_sweep", bits=tuple(range(23, 31)), seeds=(0, 1, 2, 3)),
    "smoke": ParameterSweepConfig("smoke", bits=(0, 22, 30, 31), seeds=(0,), n_windows=2),
    "stratified": ParameterSweepConfig("stratified", strata=(
        ("uniform", 128), ("exp_up", 448), ("sign_sink", 448), ("sign_argmax", 32), ("top2", 32), ("masked", 32))),
}


def template(name: str, **overrides) -> ParameterSweepConfig:
    if name not in TEMPLATES:
        raise ValueError(f"Unknown sweep template {name!r}; valid templates: {', '.join(TEMPLATES)}.")
    return replace(TEMPLATES[name], **overrides)


# ---- the results log ----

# The modules whose code decides a fault's result: a change in any of them makes old entries another run's.
_RESULT_CODE = ("repro/attention.py", "repro/hooks.py", "repro/adapters.py", "repro/sdc/injection.py",
                "repro/sdc/strata.py", "repro/sdc/experiments.py", "repro/sdc/detection.py", "repro/sdc/bounds.py",
                "repro/sdc/checksums.py", "repro/sdc/sweeps.py")
SETTINGS_FILE = "settings.json"


def code_version() -> str:
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for name in _RESULT_CODE:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    return digest.hexdigest()[:12]


def log_settings(model: str, dtype: str, window_len: int, profile: str) -> dict:
    """What a results log is tied to (see the module docstring)."""
    return {"model": model, "dtype": dtype, "window_len": window_len, "profile": profile, "code": code_version()}


class LogMismatch(InputError):
    """A results log written with other settings (or a folder that is not a results log)."""


@dataclass
class ResultsLog:
    """One JSON file per finished configuration under ``folder`` (the seed's ResultsLogger), tied to
    ``settings`` (``log_settings``); ``fresh``: start a log written with other settings over."""

    folder: Path
    settings: dict
    fresh: bool = False
    _done: set[str] = field(default_factory=set)

    def __post_init__(self):
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        marker = self.folder / SETTINGS_FILE
        entries = [p for p in self.folder.glob("*.json") if p.name != SETTINGS_FILE]
        if marker.exists():
            old = read_json(marker, what="results-log settings")
            if old != self.settings:
                if not self.fresh:
                    diff = ", ".join(f"{k} {old.get(k)!r} (now {v!r})" for k, v in self.settings.items()
                                     if old.get(k) != v) if isinstance(old, dict) else "unreadable settings"
                    raise LogMismatch(f"results log {self.folder} was written with other settings: {diff}; "
                                      "use another --log, or --fresh-log to start it over.")
                for path in entries:  # only the log's own files
                    path.unlink()
                entries = []
        elif entries or any(p.name != SETTINGS_FILE for p in self.folder.iterdir()):
            raise LogMismatch(f"--log {self.folder} holds files but no {SETTINGS_FILE}: it is not a results log "
                              "of this suite; give an empty or new folder.")
        write_json_atomic(marker, self.settings)
        self._done = {p.stem for p in entries}

    def has(self, config: ExperimentConfig) -> bool:
        return config.id in self._done

    def run_id(self) -> str:
        """The settings in a fault's logged id: ``smollm2-135m/float32/t16/cpu``."""
        s = self.settings
        return f"{s['model']}/{s['dtype']}/t{s['window_len']}/{s['profile']}"

    def write(self, config: ExperimentConfig, result: dict) -> None:
        entry = {"id": f"{self.run_id()}/{config.id}", **self.settings, **result}
        write_json_atomic(self.folder / f"{config.id}.json", entry)
        self._done.add(config.id)

    def __len__(self) -> int:
        return len(self._done)

    def read(self, configs: Iterable[ExperimentConfig]) -> list[dict]:
        out = []
        for c in sorted(configs):
            path = self.folder / f"{c.id}.json"
            try:
                entry = read_json(path, what="results-log entry")
            except InputError as err:
                raise InputError(f"{err} Delete {path.name} and rerun the same command to recompute that fault.") from None
            if not isinstance(entry, dict) or any(entry.get(k) != v for k, v in self.settings.items()):
                raise LogMismatch(f"results-log entry {path} was not written by this run's settings "
                                  f"({self.settings}); delete it or use --fresh-log.")
            out.append(entry)
        return out


def batches(configs: list[ExperimentConfig], size: int) -> Iterator[list[ExperimentConfig]]:
    """Chunks of at most ``size`` configurations sharing window and layer, fixed by the sorted ids."""
    groups: dict[tuple[int, int], list[ExperimentConfig]] = {}
    for config in sorted(configs, key=lambda c: c.id):
        groups.setdefault((config.window, config.layer), []).append(config)
    for key in sorted(groups):
        group = groups[key]
        for start in range(0, len(group), size):
            yield group[start: start + size]


def pending(configs: list[ExperimentConfig], log: ResultsLog, batch_size: int) -> list[list[ExperimentConfig]]:
    """The chunks the log does not hold whole."""
    return [chunk for chunk in batches(configs, batch_size) if not all(log.has(c) for c in chunk)]


def record(log: ResultsLog, chunk: list[ExperimentConfig], results: list[dict]) -> None:
    for config, result in zip(chunk, results):
        if not log.has(config):
            log.write(config, result)


def run_sweep(run_batch, configs: list[ExperimentConfig], log: ResultsLog, *, batch_size: int,
              progress: bool = True) -> list[dict]:
    """Run every configuration the log lacks (``run_batch(chunk) -> results``) in this process, then return
    all results in sorted configuration order."""
    todo = pending(configs, log, batch_size)
    with tqdm(total=len(configs), initial=len(configs) - sum(map(len, todo)), desc="sdc sweep", unit="fault",
              disable=not progress) as bar:
        for chunk in todo:
            record(log, chunk, run_batch(chunk))
            bar.update(len(chunk))
    return log.read(configs)

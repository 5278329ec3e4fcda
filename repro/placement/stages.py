"""The IOI pipeline's four modules as Dask tasks: Filter -> Collect -> Patch -> Plot, plus Deliver (``len``).

Each task runs on the worker of the site its placement names and takes that site's ``Site`` (model key,
device, dtype, threads): the worker loads the model itself, once per process (``worker_model``), so weights
never cross the link; only the intermediates do, the way Dask moves task results between workers:

    pairs (PairBatch list)  -> Filter  -> kept pairs           (a few KB)
    kept pairs              -> Collect -> activation caches    (clean + corrupted, every layer: 100s of MB)
    activation caches       -> Patch   -> Effects              (per-head effects, logit diffs: a few KB)
    Effects                 -> Plot    -> figure PNG bytes     (tens of KB)
    figure bytes            -> Deliver (builtin ``len``, always local: the figure ends on the workstation)

The science is the IOI claim's own code (``repro.ioi``): filtering, the activation cache, exact per-head
patching over all positions and the normalised logit-diff metric.

``ModelPlugin`` is a Dask WorkerPlugin: each worker loads its site's model (and runs it once) when it joins,
a replacement worker included, and records how long that cold start took on the scheduler's clock. A local
stage named in the site's ``Throttle`` runs under the workstation's CFS quota (``sites``), lifted on exit.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from dask.sizeof import sizeof
from distributed import WorkerPlugin

from repro.files import figure_png
from repro.ioi.collect import RunCache, collect
from repro.ioi.dataset import IOIPair, PairBatch
from repro.ioi.filtering import filter_pairs
from repro.ioi.metric import normalised
from repro.ioi.patching import head_patched_ld
from repro.models import LoadedModel, load_model
from repro.placement.sites import Throttle


@dataclass(frozen=True)
class Site:
    """How one site runs its tasks: the model it loads and where (``threads``: torch intra-op threads), and
    the CFS quota its throttled stages run under (the workstation only)."""

    model: str
    device: str = "cpu"
    dtype: str = "float32"
    threads: int | None = None  # None: leave torch's default
    throttle: Throttle | None = None


@contextmanager
def throttled(site: Site, stage: str) -> Iterator[None]:
    """The stage under the site's CFS quota, if its throttle names it; the quota is lifted on the way out."""
    if site.throttle is None or not site.throttle.applies(stage):
        yield
        return
    _write(site.throttle.quota_file, site.throttle.quota_us)
    try:
        yield
    finally:
        _write(site.throttle.quota_file, -1)


def _write(path: str, value: int) -> None:
    with open(path, "w") as f:
        f.write(str(value))


@cache
def worker_model(model: str, device: str, dtype: str) -> LoadedModel:
    """The model, loaded by the worker process itself on first use (never shipped over the link)."""
    return load_model(model, device, dtype)


def _ready(site: Site) -> LoadedModel:
    if site.threads is not None:
        torch.set_num_threads(site.threads)
    return worker_model(site.model, site.device, site.dtype)


def _cpu(batch: PairBatch) -> PairBatch:
    return batch.to("cpu")


@dataclass
class Pairs:
    """The pipeline's input, on the workstation: the prompt pairs and their tokens, batched by length."""

    pairs: list[IOIPair]
    batches: list[PairBatch]


@dataclass
class Kept:
    """Filter's output: the pairs the model answers correctly, batched by token length."""

    batches: list[PairBatch]
    n_total: int
    drop_reasons: dict[str, int]
    clean_ld: np.ndarray  # [pair] every pair's clean logit diff, in pair order
    corrupted_ld: np.ndarray  # [pair]

    @property
    def n_kept(self) -> int:
        return sum(b.size for b in self.batches)


@dataclass
class Caches:
    """Collect's output: per kept batch, the clean and the corrupted run's activation caches."""

    batches: list[PairBatch]
    clean: list[RunCache]
    corrupted: list[RunCache]

    def nbytes(self) -> int:
        return sum(c.nbytes() for c in (*self.clean, *self.corrupted))


@dataclass
class Effects:
    """Patch's output: per-head recovered logit diff [layer, head] and the logit diffs it is normalised by."""

    heads: np.ndarray  # [layer, head], patched at the final position
    clean_ld: np.ndarray  # [pair] kept pairs, batch order
    corrupted_ld: np.ndarray  # [pair]
    model: str
    n_kept: int


# Dask reads result sizes with ``sizeof`` to plan and log transfers; without these it would count only the
# Python object headers of the containers, not the tensors inside.
@sizeof.register(Caches)
def _sizeof_caches(caches: Caches) -> int:
    return caches.nbytes() + sum(sizeof([b.clean, b.corrupted, b.io, b.s]) for b in caches.batches)


@sizeof.register(Pairs)
def _sizeof_pairs(data: Pairs) -> int:
    return sum(sizeof([b.clean, b.corrupted, b.io, b.s]) for b in data.batches) + sizeof(
        [p.as_tuple() for p in data.pairs])


@sizeof.register(Kept)
def _sizeof_kept(kept: Kept) -> int:
    return sum(sizeof([b.clean, b.corrupted, b.io, b.s]) for b in kept.batches) + kept.clean_ld.nbytes * 2


@sizeof.register(Effects)
def _sizeof_effects(effects: Effects) -> int:
    return effects.heads.nbytes + effects.clean_ld.nbytes + effects.corrupted_ld.nbytes


def warm_up(site: Site) -> str:
    """Load the model and the plotting library and run each once, so no stage pays first-call costs."""
    lm = _ready(site)
    with torch.no_grad():
        lm.model(torch.zeros(1, 4, dtype=torch.long, device=site.device))
    _heatmap(Effects(np.zeros((2, 2)), np.ones(1), np.zeros(1), site.model, 1))
    return f"{site.model} on {site.device}, {torch.get_num_threads()} threads"


def filter_stage(data: Pairs, site: Site) -> Kept:
    """Filter: run every clean and corrupted prompt once, keep the pairs the model gets right."""
    lm = _ready(site)
    with throttled(site, "filter"):
        result = filter_pairs(lm.adapter, [b.to(site.device) for b in data.batches], data.pairs, site.model)
    order = sorted(result.clean_ld)
    return Kept(
        [_cpu(b) for b in result.batches], result.n_total, dict(sorted(result.drop_reasons.items())),
        np.array([result.clean_ld[i] for i in order]), np.array([result.corrupted_ld[i] for i in order]),
    )


def _cache_to(cache_: RunCache, device: str) -> RunCache:
    moved = RunCache(
        [t.to(device) for t in cache_.resid_pre], [t.to(device) for t in cache_.z],
        [t.to(device) for t in cache_.attn_out], [t.to(device) for t in cache_.mlp_out],
        type(cache_.kv)(), cache_.logit_diff.to(device),
    )
    moved.kv.keys = {k: v.to(device) for k, v in cache_.kv.keys.items()}
    moved.kv.values = {k: v.to(device) for k, v in cache_.kv.values.items()}
    return moved


def collect_stage(kept: Kept, site: Site) -> Caches:
    """Collect: one pass per prompt set caches every activation of every layer (kept on CPU, so the caches
    can move between sites of any device)."""
    lm = _ready(site)
    clean, corrupted = [], []
    with throttled(site, "collect"):
        for batch in kept.batches:
            b = batch.to(site.device)
            clean.append(_cache_to(collect(lm.adapter, b.clean, b.io, b.s), "cpu"))
            corrupted.append(_cache_to(collect(lm.adapter, b.corrupted, b.io, b.s), "cpu"))
    return Caches(kept.batches, clean, corrupted)


def patch_stage(caches: Caches, site: Site) -> Effects:
    """Patch: each head's clean output patched into the corrupted run at the final position (the IOI claim's
    ``heads_final``: 1 recomputed position per layer, so the cpu profile fits its budget), as recovered logit diff."""
    lm = _ready(site)
    patched = []
    with throttled(site, "patch"):
        for batch, clean, corrupted in zip(caches.batches, caches.clean, caches.corrupted):
            patched.append(head_patched_ld(lm.adapter, batch.to(site.device), _cache_to(clean, site.device),
                                           _cache_to(corrupted, site.device), final_only=True).cpu())
    clean_ld = torch.cat([c.logit_diff for c in caches.clean]).double()
    corrupted_ld = torch.cat([c.logit_diff for c in caches.corrupted]).double()
    mean = torch.cat(patched, dim=-1).double().mean(-1).numpy()  # [layer, head]
    heads = normalised(mean, float(clean_ld.mean()), float(corrupted_ld.mean()))
    return Effects(heads, clean_ld.numpy(), corrupted_ld.numpy(), site.model, len(clean_ld))


def plot_stage(effects: Effects, site: Site) -> bytes:
    """Plot: the layer x head heatmap, rendered to PNG bytes (the seed's Plot module)."""
    with throttled(site, "plot"):
        return _heatmap(effects)


def _heatmap(effects: Effects) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = effects.heads
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * matrix.shape[1], 1.5 + 0.22 * matrix.shape[0]))
    limit = float(np.abs(matrix).max()) or 1.0
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="logit diff recovered", shrink=0.9)
    ax.set(xlabel="head", ylabel="layer", title=f"{effects.model}: IOI patching per head (final position)\n{effects.n_kept} pairs")
    return figure_png(fig)  # bytes: the Plot stage's output travels between workers


class ModelPlugin(WorkerPlugin):
    """A Dask WorkerPlugin: on every worker that joins, the one offering a site as a resource loads that site's
    model and runs it once, so no stage pays first-call costs and a replacement worker is ready before it gets
    a task. ``cold_start`` is what it took, on the scheduler's clock."""

    name = "repro-placement-model"

    def __init__(self, sites: dict[str, Site]):
        self.sites = sites
        self.cold_start: dict = {}

    async def setup(self, worker) -> None:
        site = next((s for s in self.sites if worker.state.total_resources.get(s)), None)
        if site is None:
            return
        start = time.time() + worker.scheduler_delay
        described = await asyncio.to_thread(warm_up, self.sites[site])  # off the event loop: heartbeats go on
        self.cold_start = {"site": site, "start": start, "seconds": time.time() + worker.scheduler_delay - start,
                           "pid": os.getpid(), "described": described}


def cold_start(dask_worker=None) -> dict:
    """On a worker (``client.run``): the model plugin's record of its cold start."""
    plugin = dask_worker.plugins.get(ModelPlugin.name)
    return dict(plugin.cold_start) if plugin is not None else {}


STAGE_FUNCTIONS = {"filter": filter_stage, "collect": collect_stage, "patch": patch_stage, "plot": plot_stage}

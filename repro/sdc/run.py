"""Claim 4's pipeline, stage by stage: windows -> clean runs (false alarms of both detectors) -> fault sweep
(resumable results log; in this process, or as Dask tasks when a client is given) -> DistilBERT companion ->
counts, intervals and verdict -> figures."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch

from repro.attention import exposed_attention
from repro.models import LoadedModel, load_model
from repro.profiles import Profile, SDCSettings
from repro.sdc import plots
from repro.sdc.bidirectional import companion_run
from repro.sdc.experiments import clean_runs, wikitext_windows
from repro.sdc.injection import n_bits
from repro.sdc.result import SDCResult
from repro.sdc.runner import FaultRunner, RunSpec
from repro.sdc.sweeps import ExperimentConfig, ParameterSweepConfig, ResultsLog, run_sweep, template
from repro.timing import StageTimer


def sweep_for(settings: SDCSettings, n_layers: int) -> ParameterSweepConfig:
    """The settings' template, sized by them: strata counts (or seeds), windows and the injected layers."""
    layers = None
    if settings.layer_depths is not None:
        layers = tuple(sorted({round(depth * (n_layers - 1)) for depth in settings.layer_depths}))
    overrides = {"n_windows": settings.n_windows, "layers": layers}
    if template(settings.sweep).strata:
        overrides["strata"] = settings.strata or template(settings.sweep).strata
    else:
        overrides["seeds"] = settings.seeds
    return template(settings.sweep, **overrides)


def model_for(lm: LoadedModel, profile: Profile) -> LoadedModel:
    """The model in the claim's dtype (``profile.sdc.dtype``, e.g. bfloat16 on the gpu profile)."""
    dtype = profile.sdc.dtype or profile.dtype
    if lm.model.dtype == getattr(torch, dtype):
        return lm
    return load_model(lm.key, profile.device, dtype)


def run_sdc(lm: LoadedModel, profile: Profile, out_dir: str | Path, *, log_dir: str | Path | None = None,
            sweep: ParameterSweepConfig | None = None, configs: list[ExperimentConfig] | None = None,
            progress: bool = True, client=None, fresh_log: bool = False) -> SDCResult:
    """Fault-inject attention, detect with both detectors, classify harm; ``log_dir`` keeps the results log
    (a resumed run skips what it holds; ``fresh_log`` starts one written with other settings over); None: a
    temporary folder. ``configs`` replaces the sweep's. ``client``: run the faults on that Dask cluster."""
    settings = profile.sdc
    lm = model_for(lm, profile)
    adapter, timer = lm.adapter, StageTimer()
    dtype = str(lm.model.dtype).removeprefix("torch.")
    whole_sweep = configs is None  # the companion runs beside a sweep, not beside hand-picked faults
    sweep = sweep or sweep_for(settings, adapter.n_layers)
    configs = configs or sweep.configs(adapter.n_layers, width=n_bits(lm.model.dtype))
    n_windows = max(sweep.n_windows, 1 + max(c.window for c in configs))
    n_clean = max(n_windows, math.ceil(settings.clean_calls / adapter.n_layers))
    spec = RunSpec(lm.key, profile.name, profile.device, dtype, settings.window_len, n_windows)
    with torch.no_grad(), exposed_attention(lm.model):
        windows = timer.call("windows", wikitext_windows, lm.tokenizer, n_clean, settings.window_len)
        _, clean = timer.call("clean", clean_runs, adapter, windows.to(adapter.device))
    with tempfile.TemporaryDirectory(prefix="sdc-log-") as scratch, timer.stage("sweep"):
        log = ResultsLog(Path(log_dir) if log_dir else Path(scratch), spec.log_settings(), fresh=fresh_log)
        if client is not None:
            from repro.sdc.distributed import run_sweep_dask

            faults = run_sweep_dask(client, spec, configs, log, batch_size=settings.batch_size, progress=progress)
        else:
            runner = FaultRunner(spec, lm=lm)
            faults = run_sweep(runner.run, configs, log, batch_size=settings.batch_size, progress=progress)
    companion = None
    if settings.companion_share > 0 and sweep.strata and whole_sweep:
        companion = timer.call("companion", companion_run, settings, profile.device, dtype)
    result = SDCResult(
        model=lm.key,
        dtype=dtype,
        faults=faults,
        clean_calls={name: sum(len(c.flagged()) for c in calls) for name, calls in clean.items()},
        clean_flagged={name: sum(int(c.flagged().sum()) for c in calls) for name, calls in clean.items()},
        clean_checks_fired={name: {check: sum(int(c.violated()[check].sum()) for c in calls) for check in calls[0].use}
                            for name, calls in clean.items()},
        tightness={name: {check: [float(x) for c in calls for x in c.use[check]] for check in calls[0].use}
                   for name, calls in clean.items()},
        window_len=settings.window_len,
        sweep=sweep.name,
        companion=companion,
    )
    with timer.stage("figures"):
        result.figures = plots.plot_all(result, Path(out_dir))
    result.seconds = dict(timer.seconds)
    return result

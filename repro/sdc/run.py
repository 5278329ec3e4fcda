"""Claim 4's pipeline, stage by stage: windows -> clean runs (baselines, false positives) -> fault sweep
(resumable results log) -> counts and verdict -> figures."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch

from repro.models import LoadedModel
from repro.profiles import SDCSettings
from repro.sdc import plots
from repro.sdc.attention import exposed_attention
from repro.sdc.detection import CHECKS
from repro.sdc.experiments import clean_runs, run_faults, wikitext_windows
from repro.sdc.result import SDCResult
from repro.sdc.sweeps import ExperimentConfig, ParameterSweepConfig, ResultsLog, run_sweep, template
from repro.timing import StageTimer


def sweep_for(settings: SDCSettings, n_layers: int) -> ParameterSweepConfig:
    """The settings' template, sized by them: seeds, windows and the injected layers."""
    layers = None
    if settings.layer_depths is not None:
        layers = tuple(sorted({round(depth * (n_layers - 1)) for depth in settings.layer_depths}))
    return template(settings.sweep, seeds=settings.seeds, n_windows=settings.n_windows, layers=layers)


def run_sdc(lm: LoadedModel, settings: SDCSettings, out_dir: str | Path, *, log_dir: str | Path | None = None,
            sweep: ParameterSweepConfig | None = None, configs: list[ExperimentConfig] | None = None,
            progress: bool = True) -> SDCResult:
    """Fault-inject attention, detect by bound violations, classify harm; ``log_dir`` keeps the results
    log (a resumed run skips what it holds); None: a temporary folder. ``configs`` replaces the sweep's."""
    adapter, timer = lm.adapter, StageTimer()
    sweep = sweep or sweep_for(settings, adapter.n_layers)
    configs = configs or sweep.configs(adapter.n_layers)
    n_windows = max(sweep.n_windows, 1 + max(c.window for c in configs))
    n_clean = max(n_windows, math.ceil(settings.clean_calls / adapter.n_layers))
    with torch.no_grad(), exposed_attention(lm.model):
        windows = timer.call("windows", wikitext_windows, lm.tokenizer, n_clean, settings.window_len).to(adapter.device)
        baselines, calls = timer.call("clean", clean_runs, adapter, windows)

        def run_batch(chunk: list[ExperimentConfig]) -> list[dict]:
            first = chunk[0]
            return run_faults(adapter, baselines[first.window], [c.injection() for c in chunk], first.layer,
                              first.window)

        with tempfile.TemporaryDirectory(prefix="sdc-log-") as scratch, timer.stage("sweep"):
            log = ResultsLog(Path(log_dir) if log_dir else Path(scratch))
            faults = run_sweep(run_batch, configs, log, batch_size=settings.batch_size, progress=progress)
    flagged = [c.flagged() for c in calls]  # each clean call covers a batch of windows
    result = SDCResult(
        model=lm.key,
        faults=faults,
        clean_calls=sum(len(f) for f in flagged),
        clean_flagged=int(sum(int(f.sum()) for f in flagged)),
        clean_checks_fired={check: int(sum(int(c.violated()[check].sum()) for c in calls)) for check in CHECKS},
        tightness={check: [float(x) for c in calls for x in c.use[check]] for check in CHECKS},
        window_len=settings.window_len,
        sweep=sweep.name,
    )
    with timer.stage("figures"):
        result.figures = plots.plot_all(result, Path(out_dir))
    result.seconds = dict(timer.seconds)
    return result

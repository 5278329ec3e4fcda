"""What one process needs to run the faults of a sweep, loaded once: the model, the windows and each
window's clean baseline. The same ``FaultRunner`` serves the in-process sweep and every Dask worker
(``repro.sdc.distributed``), so a fault's result does not depend on where it ran: each baseline is a clean
run of its window alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from repro.attention import exposed_attention
from repro.models import LoadedModel, load_model
from repro.sdc.experiments import Baseline, clean_runs, run_faults, wikitext_windows
from repro.sdc.injection import n_bits
from repro.sdc.sweeps import ExperimentConfig, log_settings


@dataclass(frozen=True, eq=False)
class RunSpec:
    """Everything a process needs to run faults of one sweep (picklable, for Dask workers). ``loader`` and
    ``windows`` replace the registered model and WikiText-2's windows (tests, other models)."""

    model: str
    profile: str
    device: str
    dtype: str
    window_len: int
    n_windows: int
    loader: Callable[[], LoadedModel] | None = None
    windows: torch.Tensor | None = None  # [n_windows, window_len] token ids

    def load(self) -> LoadedModel:
        return self.loader() if self.loader is not None else load_model(self.model, self.device, self.dtype)

    def log_settings(self) -> dict:
        return log_settings(self.model, self.dtype, self.window_len, self.profile)


class FaultRunner:
    """Runs chunks of configurations (same window and layer) for one ``RunSpec``; loads on construction."""

    def __init__(self, spec: RunSpec, lm: LoadedModel | None = None):
        self.spec = spec
        self.lm = lm or spec.load()
        self.windows = spec.windows if spec.windows is not None else wikitext_windows(
            self.lm.tokenizer, spec.n_windows, spec.window_len)
        self.windows = self.windows.to(self.lm.adapter.device)
        self._baselines: dict[int, Baseline] = {}
        self._envelopes: dict = {}  # the detectors' envelopes, per layer: from the weights, made once

    @property
    def width(self) -> int:
        return n_bits(self.lm.model.dtype)

    def baseline(self, window: int) -> Baseline:
        if window not in self._baselines:
            if not 0 <= window < len(self.windows):
                raise ValueError(f"Window {window} is outside 0..{len(self.windows) - 1}.")
            with torch.no_grad(), exposed_attention(self.lm.model):
                (self._baselines[window],), _ = clean_runs(self.lm.adapter, self.windows[window: window + 1],
                                                           detectors=())
        return self._baselines[window]

    def run(self, chunk: list[ExperimentConfig]) -> list[dict]:
        first = chunk[0]
        baseline = self.baseline(first.window)
        with torch.no_grad(), exposed_attention(self.lm.model):
            return run_faults(self.lm.adapter, baseline, [c.injection() for c in chunk], first.layer, first.window,
                              strata_of=[c.stratum for c in chunk], envelopes=self._envelopes)

"""DistilBERT at random init: the same faults and both detectors on bidirectional attention (seed 003's
third model family), side by side with the causal model of the claim. No weights are needed: transformers'
``DistilBertForMaskedLM(DistilBertConfig(...))`` with the library's default sizes (6 layers, 12 heads,
dim 768), seeded, reading WikiText-2 through GPT-2's tokenizer (the vocabulary is sized to it).

Its clean calls include padded batches (the bidirectional padding mask hides keys from every query), so the
false-alarm count covers padding; its sweep leaves the masked stratum out (no entry is masked without
padding). The result is reported, not judged: the claim's verdict is the causal model's.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field, replace
from functools import cache

import torch

from repro.adapters import adapter_for
from repro.attention import exposed_attention
from repro.models import LoadedModel, gpt2_tokenizer
from repro.profiles import SDCSettings
from repro.sdc.detection import DETECTORS
from repro.sdc.experiments import detectors_for, wikitext_windows
from repro.sdc.runner import FaultRunner, RunSpec
from repro.sdc.sweeps import ResultsLog, run_sweep

KEY = "distilbert-random"
SEED = 0


def distilbert_random(dtype: str = "float32", device: str = "cpu") -> LoadedModel:
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    tokenizer = gpt2_tokenizer()
    torch.manual_seed(SEED)
    model = DistilBertForMaskedLM(DistilBertConfig(vocab_size=len(tokenizer)))
    model = model.to(device=device, dtype=getattr(torch, dtype)).eval().requires_grad_(False)
    return LoadedModel(KEY, model, tokenizer, adapter_for(model), f"random-init DistilBertConfig() seed={SEED}", None)


@dataclass
class Companion:
    """DistilBERT's faults (as in the results log) and each detector's clean calls and alarms."""

    faults: list[dict]
    clean_calls: dict[str, int] = field(default_factory=dict)
    clean_flagged: dict[str, int] = field(default_factory=dict)


def padded_clean_calls(lm: LoadedModel, windows: torch.Tensor) -> tuple[dict[str, int], dict[str, int]]:
    """Every window once plain and once with its second half padded away (``attention_mask``), both detectors
    watching: (calls, flagged) per detector."""
    mask = torch.ones_like(windows)
    mask[:, windows.shape[1] // 2:] = 0
    calls, flagged = dict.fromkeys(DETECTORS, 0), dict.fromkeys(DETECTORS, 0)
    for attention_mask in (None, mask):
        watching = detectors_for(lm.adapter)
        with torch.no_grad(), exposed_attention(lm.model), watching["bounds"].installed(), \
                watching["checksum"].installed():
            lm.model(windows, attention_mask=attention_mask)
        for name, detector in watching.items():
            calls[name] += sum(len(c.flagged()) for c in detector.calls)
            flagged[name] += sum(int(c.flagged().sum()) for c in detector.calls)
    return calls, flagged


@cache
def companion_run(settings: SDCSettings, device: str, dtype: str) -> Companion:
    """The companion's faults (``settings.companion_share`` of the settings' strata, at the same relative
    depths) and clean calls; made once per process (both causal models of a claim run share it)."""
    from repro.sdc.run import sweep_for

    lm = distilbert_random(dtype, device)
    adapter = lm.adapter
    sweep = sweep_for(settings, adapter.n_layers)
    strata = tuple((s, max(1, math.ceil(n * settings.companion_share))) for s, n in sweep.strata)
    configs = replace(sweep, name=f"{sweep.name}-{KEY}", strata=strata).configs(adapter.n_layers, bidirectional=True)
    n_windows = 1 + max(c.window for c in configs)
    spec = RunSpec(KEY, "companion", device, dtype, settings.window_len, n_windows, loader=lambda: lm)
    runner = FaultRunner(spec, lm=lm)
    clean = wikitext_windows(lm.tokenizer, max(n_windows, math.ceil(settings.clean_calls / adapter.n_layers / 2)),
                             settings.window_len).to(adapter.device)
    calls, flagged = padded_clean_calls(lm, clean)
    with tempfile.TemporaryDirectory(prefix="sdc-companion-") as scratch:
        log = ResultsLog(scratch, spec.log_settings())
        faults = run_sweep(runner.run, configs, log, batch_size=settings.batch_size, progress=False)
    return Companion(faults, calls, flagged)

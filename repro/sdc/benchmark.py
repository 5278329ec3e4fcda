"""Benchmark: the detector's cost relative to the attention it guards, and the sweep's throughput.

Overhead: on SmolLM2-135M, one layer's real q, k, v (a WikiText-2 window of 128 or 512 tokens) are run
through the attention function alone, then through every check of the detector on the intermediates it
produced; the ratio is the detector's overhead (goal <= 10%; ATTNChecker reports ~7%), and each check's
own time is listed. Throughput: faults per second of a small sweep (injection, run from the injected
layer, detection, harm), with the windows' clean runs outside the timing.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from repro import hooks
from repro.assets import AssetError
from repro.models import load_model
from repro.profiles import Profile
from repro.sdc import bounds
from repro.sdc.attention import exposed_attention, exposed_attention_forward
from repro.sdc.detection import Detector
from repro.sdc.experiments import clean_runs, run_faults, wikitext_windows
from repro.sdc.sweeps import ResultsLog, run_sweep, template
from repro.timing import synchronizer, time_calls

MODEL = "smollm2-135m"
LAYER = 15
REPEATS = 15


def _median_ms(fn, sync) -> float:
    return 1e3 * time_calls(fn, REPEATS, warmup=1, sync=sync).median


def _overhead_row(lm, n_pos: int) -> dict:
    adapter, sync = lm.adapter, synchronizer(lm.model.device)
    ids = wikitext_windows(lm.tokenizer, 1, n_pos).to(lm.model.device)
    names = [hooks.hook_name(s, LAYER) for s in (*hooks.ATTENTION_SITES, hooks.ATTN_Z)]
    with torch.no_grad(), hooks.caching(adapter, names) as cache:
        adapter.forward(ids)
    q, k, v = (cache[hooks.hook_name(s, LAYER)].transpose(1, 2).contiguous()
               for s in (hooks.ATTN_Q, hooks.ATTN_K, hooks.ATTN_V))  # [1, h, pos, d]
    module = adapter.attention(LAYER)
    mask = torch.full((n_pos, n_pos), torch.finfo(q.dtype).min, device=q.device).triu(1)[None, None]
    detector = Detector(adapter)
    sites = {hooks.hook_name(s, LAYER): cache[hooks.hook_name(s, LAYER)] for s in (*hooks.ATTENTION_SITES, hooks.ATTN_Z)}
    by_site = {hooks.parse_hook_name(n)[0]: t for n, t in sites.items()}
    detector.envelopes(LAYER)  # computed once per layer, from the weights

    with torch.no_grad():
        attention_ms = _median_ms(lambda: exposed_attention_forward(module, q, k, v, mask, scaling=adapter.d_head**-0.5), sync)
        detector_ms = _median_ms(lambda: detector.check(LAYER, **by_site), sync)
        # Each check alone, on the inputs the detector prepares.
        groups = adapter.n_heads // adapter.n_kv_heads
        keys, values = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
        scores, pattern = by_site[hooks.ATTN_SCORES], by_site[hooks.ATTN_PATTERN]
        z = by_site[hooks.ATTN_Z].transpose(1, 2)
        visible = torch.ones(n_pos, n_pos, dtype=torch.bool, device=q.device).tril()
        n, u, env = visible.sum(-1).float(), detector.u, detector.envelopes(LAYER)
        checks = {
            "finite": lambda: bounds.finite_use(q, k, v, scores, pattern, z),
            "envelopes": lambda: [bounds.envelope_use(by_site[s], env[x]) for s, x in
                                  ((hooks.ATTN_Q, "q"), (hooks.ATTN_K, "k"), (hooks.ATTN_V, "v"))],
            "cauchy_schwarz": lambda: bounds.cauchy_schwarz_use(q, keys, scores, detector.scale, visible, u),
            "row_sum": lambda: bounds.row_sum_use(pattern, n, u),
            "softmax_interval": lambda: bounds.softmax_interval_use(scores, pattern, visible, n, u),
            "lambert_gap": lambda: bounds.lambert_gap_use(scores, pattern, visible, n, u),
            "output_range": lambda: bounds.output_range_use(z, values, visible, n, u, causal=True),
        }
        each = {f"{name}_ms": round(_median_ms(fn, sync), 3) for name, fn in checks.items()}
    return {"benchmark": "detector overhead", "model": MODEL, "seq_len": n_pos, "layer": LAYER,
            "attention_ms": round(attention_ms, 3), "detector_ms": round(detector_ms, 3),
            "overhead_pct": round(100 * detector_ms / attention_ms, 1), "goal_pct": 10, **each}


def _throughput_row(lm, profile: Profile) -> dict:
    settings = profile.sdc
    adapter = lm.adapter
    sweep = template("smoke", n_windows=2, layers=(0, adapter.n_layers // 2))
    configs = sweep.configs(adapter.n_layers)
    with torch.no_grad(), exposed_attention(lm.model), tempfile.TemporaryDirectory() as scratch:
        windows = wikitext_windows(lm.tokenizer, sweep.n_windows, settings.window_len).to(lm.model.device)
        baselines, _ = clean_runs(adapter, windows)

        def run_batch(chunk):
            return run_faults(adapter, baselines[chunk[0].window], [c.injection() for c in chunk], chunk[0].layer,
                              chunk[0].window)

        start = time.perf_counter()
        run_sweep(run_batch, configs, ResultsLog(Path(scratch)), batch_size=settings.batch_size, progress=False)
        seconds = time.perf_counter() - start
    return {"benchmark": "injection throughput", "model": MODEL, "seq_len": settings.window_len,
            "faults": len(configs), "seconds": round(seconds, 2), "faults_per_s": round(len(configs) / seconds, 2)}


def run_benchmark(profile: Profile) -> list[dict]:
    try:
        lm = load_model(MODEL, profile.device, profile.dtype)
    except AssetError as err:
        return [{"benchmark": "sdc", "model": MODEL, "skipped": str(err)}]
    rows = [_overhead_row(lm, n_pos) for n_pos in (128, 512)]
    rows.append(_throughput_row(lm, replace(profile)))
    return rows

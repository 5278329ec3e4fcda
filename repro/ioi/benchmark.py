"""Benchmark: exact per-head patching and attribution patching against the naive baseline.

All three variants patch every head of SmolLM2-135M (30 layers x 9 heads) on the same filtered pairs,
starting from the same clean and corrupted caches (collected once, outside the timings):

- naive: one full model forward, full LM head, per head (TransformerLens-style per-head patching);
- exact: ``head_patched_ld`` (start at the patched layer, recompute only positions from the first
  clean/corrupted difference, heads and layers batched, two unembedding rows);
- attribution: one forward and one backward pass on the corrupted prompts.

Memory: "peak_mem_mb" is the growth of the process's resident set (RSS) over its level just before the
variant, sampled every 5 ms from /proc/self/statm by a background thread. It counts what torch's CPU
allocator actually holds from the OS (activations, temporaries), not Python objects only (tracemalloc)
and not the already-loaded weights; a peak shorter than 5 ms can be missed.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr

from repro.assets import AssetError
from repro.ioi.attribution import head_attributions
from repro.ioi.collect import collect
from repro.ioi.dataset import generate_pairs, tokenize_pairs
from repro.ioi.filtering import filter_pairs
from repro.ioi.metric import normalised
from repro.ioi.patching import head_patched_ld, naive_head_patched_ld
from repro.memory import RSSPeak
from repro.models import load_model
from repro.profiles import Profile
from repro.timing import time_calls

MODEL = "smollm2-135m"
REPEATS = {"naive": 1, "exact": 3, "attribution": 5}  # the naive baseline alone takes minutes


def _time(fn, repeats: int):
    """(median seconds, peak RSS growth in MB over all repeats, last output)."""
    with RSSPeak() as mem:
        timings = time_calls(fn, repeats)
    return timings.median, mem.growth_mb, timings.output


def run_benchmark(profile: Profile) -> list[dict]:
    try:
        loaded = load_model(MODEL, profile.device, profile.dtype)
    except AssetError as err:
        return [
            {"benchmark": "ioi head patching", "model": MODEL, "variant": "-", "notes": f"not run: {err}"}
        ]
    adapter, settings = loaded.adapter, profile.ioi
    pairs = generate_pairs(loaded.tokenizer, settings.n_pairs, settings.pair_seed, settings.corruption)
    on_device = [b.to(adapter.device) for b in tokenize_pairs(loaded.tokenizer, pairs)]
    batches = filter_pairs(adapter, on_device, pairs, MODEL).batches
    caches = [
        (b, collect(adapter, b.clean, b.io, b.s), collect(adapter, b.corrupted, b.io, b.s)) for b in batches
    ]
    n_pairs = sum(b.size for b in batches)
    clean_mean = float(torch.cat([c.logit_diff for _, c, _ in caches]).mean())
    corr_mean = float(torch.cat([x.logit_diff for _, _, x in caches]).mean())

    def effects(per_batch):  # [layer, head, batch] per batch -> normalised [layer, head]
        return normalised(torch.cat(per_batch, dim=-1).mean(-1).double().numpy(), clean_mean, corr_mean)

    variants = {
        # the baseline takes minutes: show its progress
        "naive": lambda: effects([naive_head_patched_ld(adapter, b, c, progress=True) for b, c, _ in caches]),
        "exact": lambda: effects([head_patched_ld(adapter, b, c, x, final_only=False) for b, c, x in caches]),
        "attribution": lambda: effects(
            [head_attributions(adapter, b, c)[0] + x.logit_diff for b, c, x in caches]
        ),
    }
    measured = {name: _time(fn, REPEATS[name]) for name, fn in variants.items()}
    base_s, _, naive = measured["naive"]
    exact = measured["exact"][2]
    rows = []
    for name, (median_s, mem_mb, out) in measured.items():
        row = {
            "benchmark": "ioi per-head patching",
            "model": MODEL,
            "variant": name,
            "pairs": n_pairs,
            "heads": adapter.n_layers * adapter.n_heads,
            "median_s": round(median_s, 3),
            "speedup_vs_baseline": round(base_s / median_s, 1),
            "speedup_vs_exact": round(measured["exact"][0] / median_s, 1),
            "max_abs_diff": None,
            "spearman": None,
            "peak_mem_mb": round(mem_mb, 1),
            "notes": f"{REPEATS[name]} run(s); {torch.get_num_threads()} thread(s)",
        }
        if name == "exact":
            row["max_abs_diff"] = float(np.abs(out - naive).max())
            row["notes"] += "; max_abs_diff vs naive, normalised effects"
        if name == "attribution":
            row["spearman"] = round(float(spearmanr(exact.ravel(), out.ravel())[0]), 4)
            row["max_abs_diff"] = float(np.abs(out - exact).max())
            worst = np.argsort(-np.abs(out - exact), axis=None)[:3]
            row["notes"] += "; vs exact; most different heads: " + ", ".join(
                f"{i // adapter.n_heads}.{i % adapter.n_heads} (exact {exact.flat[i]:+.3f}, attr {out.flat[i]:+.3f})"
                for i in worst
            )
        rows.append(row)
    return rows

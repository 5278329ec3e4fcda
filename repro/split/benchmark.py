"""Benchmark rows for ``nox -s bench``: memory bandwidth, and Bottom/Top medians at the seed's shape and
at ``BENCH_LONG_SEQ`` tokens, where the LM head is no longer memory-bound."""

from __future__ import annotations

from repro.assets import AssetError
from repro.models import load_model
from repro.profiles import Profile
from repro.split.parts import LM_HEAD, split_parts
from repro.split.roofline import memory_bandwidth
from repro.split.run import token_ids
from repro.split.timing import time_pairs

BENCH_LONG_SEQ = 128  # the benchmark's second shape


def run_benchmark(profile: Profile) -> list[dict]:
    """Rows for ``nox -s bench``: memory bandwidth, and Bottom/Top medians at the seed's shape and at 128 tokens."""
    settings = profile.split
    bandwidth = memory_bandwidth(profile.device)
    rows = [
        {
            "benchmark": "memory bandwidth",
            "model": "-",
            "variant": f"sum over {bandwidth['bytes'] >> 20} MiB",
            "median_ms": 1e3 * bandwidth["read_s"],
            "ratio": None,
            "notes": f"read {bandwidth['read'] / 1e9:.1f} GB/s; copy {bandwidth['copy'] / 1e9:.1f} GB/s (read + write)",
        }
    ]
    for key in profile.required_models + profile.optional_models:
        try:
            lm = load_model(key, profile.device, profile.dtype)
        except AssetError as err:
            if profile.requires(key):
                raise
            rows.append(
                {
                    "benchmark": "split",
                    "model": key,
                    "variant": "-",
                    "median_ms": None,
                    "ratio": None,
                    "notes": f"not run: {err}",
                }
            )
            continue
        bottom, top = split_parts(lm.adapter, settings.cut)
        for seq_len, pairs in ((settings.seq_len, settings.pairs), (BENCH_LONG_SEQ, settings.sweep_pairs)):
            timing = time_pairs(bottom, top, token_ids(bottom, seq_len), pairs, settings.warmup)
            s = timing.summary()
            share = timing.top.share(LM_HEAD)["mean"]
            variant = f"cut {settings.cut}, [1, {seq_len}], {s['threads']} thread(s)"
            rows.append(
                {
                    "benchmark": "split bottom",
                    "model": key,
                    "variant": variant,
                    "median_ms": s["bottom_ms"],
                    "ratio": None,
                    "notes": f"IQR {s['bottom_ms_iqr'][0]:.2f}-{s['bottom_ms_iqr'][1]:.2f} ms",
                }
            )
            rows.append(
                {
                    "benchmark": "split top",
                    "model": key,
                    "variant": variant,
                    "median_ms": s["top_ms"],
                    "ratio": s["ratio"],
                    "notes": f"ratio = median Top/Bottom of {pairs} pairs (IQR {s['ratio_iqr'][0]:.2f}-"
                    f"{s['ratio_iqr'][1]:.2f}); LM head {100 * share:.0f}% of Top",
                }
            )
    return rows

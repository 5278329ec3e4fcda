"""Benchmarks: speed and memory targets are measured here and written as tables, never asserted in tests.

Each entry of ``BENCHMARKS`` names a ``run_benchmark(profile) -> list[dict]`` function; its rows share
one run, so ratios inside a table are measured side by side on the same (noisy) machine.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from repro.profiles import get_profile
from repro.report import BENCH_FILE, key_value_table, markdown_table
from repro.results import profile_dir, provenance, write_text_atomic

BENCHMARKS = {
    "split": "repro.split.benchmark:run_benchmark",
    "ioi": "repro.ioi.benchmark:run_benchmark",
    "sdc": "repro.sdc.benchmark:run_benchmark",
    "lm": "repro.lm.benchmark:run_benchmark",
    "hybrid": "repro.placement.benchmark:run_benchmark",
    "gradsim": "repro.gradsim.benchmark:run_benchmark",
}


def run_benchmarks(profile_name: str, select: str | None = None) -> dict[str, list[dict]]:
    profile = get_profile(profile_name)
    tables = {}
    for name, target in BENCHMARKS.items():
        if select and select not in name:
            continue
        module, func = target.split(":")
        print(f"benchmark {name} ...", flush=True)
        tables[name] = getattr(importlib.import_module(module), func)(profile)
    return tables


def write_benchmarks(profile_name: str, select: str | None = None) -> Path:
    tables = run_benchmarks(profile_name, select)
    prov = provenance()
    machine = {k: prov[k] for k in ("cpu", "cpu_count", "torch_threads", "cuda", "git_commit", "date")}
    parts = [
        f"# Benchmarks — profile `{profile_name}`",
        "",
        "Medians over repeated runs; ratios compare rows measured side by side in this one run.",
        "",
        key_value_table(machine),
        "",
    ]
    for name, rows in tables.items():
        parts += [f"## {name}", "", markdown_table(rows) if rows else "(no rows)", ""]
    return write_text_atomic(profile_dir(profile_name) / BENCH_FILE, "\n".join(parts))

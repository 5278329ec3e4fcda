"""Benchmarks: speed and memory targets are measured here and written as tables, never asserted in tests.

Each entry of ``BENCHMARKS`` names a ``run_benchmark(profile) -> list[dict]`` function; its rows share
one run, so ratios inside a table are measured side by side on the same (noisy) machine.

The tables live in ``bench.json`` (rendered to ``bench.md``), one section per benchmark with the machine,
commit and date it was measured on: ``-k gradsim`` re-measures one section and keeps the others.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from repro.profiles import get_profile
from repro.readers import InputError, check_type, read_json
from repro.report import BENCH_FILE, key_value_table, markdown_table
from repro.results import profile_dir, provenance, write_json_atomic, write_text_atomic

BENCHMARKS = {
    "split": "repro.split.benchmark:run_benchmark",
    "ioi": "repro.ioi.benchmark:run_benchmark",
    "sdc": "repro.sdc.benchmark:run_benchmark",
    "lm": "repro.lm.benchmark:run_benchmark",
    "hybrid": "repro.placement.benchmark:run_benchmark",
    "gradsim": "repro.gradsim.benchmark:run_benchmark",
}
BENCH_DATA = "bench.json"  # the sections bench.md is rendered from
MACHINE_KEYS = ("cpu", "cpu_count", "torch_threads", "cuda", "git_commit", "date")


def selected(select: str | None) -> list[str]:
    """Benchmark names containing ``select`` (all without one); an unmatched selection lists the valid names."""
    names = [name for name in BENCHMARKS if not select or select in name]
    if not names:
        raise InputError(f"No benchmark matches -k {select!r}; the benchmarks are: {', '.join(BENCHMARKS)}.")
    return names


def run_benchmarks(profile_name: str, names: list[str]) -> dict[str, list[dict]]:
    profile = get_profile(profile_name)
    tables = {}
    for name in names:
        module, func = BENCHMARKS[name].split(":")
        print(f"benchmark {name} ...", flush=True)
        tables[name] = getattr(importlib.import_module(module), func)(profile)
    return tables


def load_sections(path: Path) -> dict[str, dict]:
    """The sections measured before (none when there is no file yet); a malformed file fails in one line."""
    if not path.is_file():
        return {}
    sections = check_type(read_json(path, what="benchmark data"), dict, f"{path}")
    for name, section in sections.items():
        check_type(section, dict, f"{path}: {name}")
        check_type(section.get("machine"), dict, f"{path}: {name}.machine")
        check_type(section.get("rows"), list, f"{path}: {name}.rows")
    return sections


def render(profile_name: str, sections: dict[str, dict]) -> str:
    parts = [
        f"# Benchmarks — profile `{profile_name}`",
        "",
        "Medians over repeated runs; ratios compare rows measured side by side in one run (one section), "
        "never across sections, which may come from different days.",
        "",
    ]
    for name in [*BENCHMARKS, *sorted(set(sections) - set(BENCHMARKS))]:
        if name in sections:
            section = sections[name]
            rows = section["rows"]
            parts += [f"## {name}", "", key_value_table(section["machine"]), "",
                      markdown_table(rows) if rows else "(no rows)", ""]
    return "\n".join(parts)


def write_benchmarks(profile_name: str, select: str | None = None) -> Path:
    """Run the selected benchmarks and rewrite bench.md, keeping the sections not re-measured."""
    names = selected(select)
    folder = profile_dir(profile_name)
    sections = load_sections(folder / BENCH_DATA)  # read first: a corrupt file fails before minutes of work
    tables = run_benchmarks(profile_name, names)
    prov = provenance()
    machine = {k: prov[k] for k in MACHINE_KEYS}
    sections |= {name: {"machine": machine, "rows": rows} for name, rows in tables.items()}
    write_json_atomic(folder / BENCH_DATA, sections)
    return write_text_atomic(folder / BENCH_FILE, render(profile_name, sections))

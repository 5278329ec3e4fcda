"""The markdown report, built from saved result records alone (no experiment is re-run)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from repro.results import ClaimRecord, load_records, profile_dir, write_text_atomic
from repro.verdicts import Estimate, Interval, Ruling, Verdict

BADGE = {
    Verdict.REPRODUCED: "✅ REPRODUCED",
    Verdict.PARTIAL: "🟡 PARTIAL",
    Verdict.NOT_REPRODUCED: "❌ NOT_REPRODUCED",
    Verdict.INCONCLUSIVE: "❔ INCONCLUSIVE",
    Verdict.NOT_RUN: "⏸ NOT_RUN",
}
# What each verdict means, for the report's readers (README says the same).
LEGEND = (
    "✅ the 95% interval of every part lies inside the claim's region and every gate passed · "
    "🟡 some parts reproduced, the others decided not reproduced · "
    "❌ evidence of absence: the interval lies entirely outside the region · "
    "❔ a valid run that cannot decide (the interval straddles a boundary, or a gate failed); not a failure to reproduce · "
    "⏸ not run here (the reason is given)."
)
BENCH_FILE = "bench.md"  # written by repro.bench next to the report
SHARED_PROVENANCE = ("git_commit", "python", "platform", "cpu", "cpu_count", "torch_threads", "cuda", "lock_sha256", "lock_drift")


def fmt_interval(interval: Interval | None) -> str:
    if interval is None:
        return "—"
    return f"[{fmt(float(interval.low))}, {fmt(float(interval.high))}]"


def fmt(value) -> str:
    """A number as a reader wants to see it: 4 significant digits, thousands separators for counts; an
    estimate as value [low, high] (n units)."""
    if value is None:
        return "—"
    if isinstance(value, Estimate):
        i = value.interval
        return f"{fmt(value.value)} {fmt_interval(i)} (n = {i.n} {i.units})"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e5 else f"{value:.4g}"
    if isinstance(value, (list, tuple)) and all(not isinstance(v, (dict, list)) for v in value):
        return ", ".join(fmt(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def key_value_table(values: dict) -> str:
    return markdown_table([{"quantity": k, "value": fmt(v)} for k, v in values.items()])


def _is_rows(value) -> bool:
    return isinstance(value, list) and value and all(isinstance(r, dict) for r in value)


def _verdict_cell(r: ClaimRecord) -> str:
    cell = BADGE[r.verdict]
    return cell if r.verdict == r.expected else f"{cell} (declared {r.expected.value})"


def verdict_table(records: list[ClaimRecord]) -> str:
    rows = []
    for r in records:
        k = r.measurement.key_number
        ours = "—" if k.ours is None else f"{fmt(k.ours)}{k.unit}"
        published = "—" if k.published is None else f"{fmt(k.published)}{k.unit}"
        ruling = r.measurement.ruling
        rows.append(
            {
                "#": r.claim.number,
                "claim": r.claim.title,
                "model": f"`{r.model}`",
                "verdict": _verdict_cell(r),
                "key number": k.name if k.ours is not None else r.reason.split(":")[0] or "—",  # the full reason is below
                "ours": ours,
                "95% interval": fmt_interval(k.interval),
                "n": f"{k.interval.n} {k.interval.units}" if k.interval else "—",
                "published": published,
                "decided by": ruling.decided_by if ruling else "—",
                "snapshot": r.snapshot,
            }
        )
    return markdown_table(rows)


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def claim_section(records: list[ClaimRecord]) -> str:
    claim = records[0].claim
    out = [
        f"## Claim {claim.number} — {claim.title}",
        "",
        "**As published**",
        "",
        _quote(claim.original),
        "",
        "**In English**",
        "",
        _quote(claim.english),
        "",
        f"**Source.** {claim.source}",
        "",
        f"**Method.** {claim.method}",
        "",
        f"**Reproduced when.** {claim.rule}",
        "",
    ]
    for r in records:
        m = r.measurement
        out += [f"### `{r.model}`: {_verdict_cell(r)}", ""]
        if r.verdict == Verdict.NOT_RUN:
            out += [f"Not run: {r.reason}", ""]
            continue
        k = m.key_number
        interval = f" {fmt_interval(k.interval)} ({k.interval.method}, n = {k.interval.n} {k.interval.units})" if k.interval else ""
        out += [f"**{k.name}: {fmt(k.ours)}{k.unit}**{interval} (published: {fmt(k.published)}{k.unit}). "
                f"Snapshot: {r.snapshot}.", ""]
        if m.ruling:
            out += [ruling_section(m.ruling), ""]
        out += [f"- {note}" for note in m.notes] + ([""] if m.notes else [])
        if m.criteria:
            out += ["Criteria the verdict rule used:", "", key_value_table(m.criteria), ""]
        scalars = {k: v for k, v in m.numbers.items() if not _is_rows(v) and not isinstance(v, dict)}
        if scalars:
            out += ["Measured:", "", key_value_table(scalars), ""]
        for name, value in m.numbers.items():
            if _is_rows(value):
                out += [f"{name}:", "", markdown_table(value), ""]
            elif isinstance(value, dict):
                out += [f"{name}:", "", key_value_table(value), ""]
        if m.published:
            out += ["Published numbers:", "", key_value_table(m.published), ""]
        out += [f"![{r.model}: {Path(f).stem}]({Path(f).as_posix()})" for f in m.figures]
        out += [""]
    return "\n".join(out)


def ruling_section(ruling: Ruling) -> str:
    """How the verdict was decided: each part's interval against its region, the gates, what would decide."""
    out = [f"Decided by: **{ruling.decided_by}**."]
    if ruling.parts:
        out += ["", markdown_table([
            {
                "part": p.name,
                "estimate": fmt(p.estimate.value),
                "95% interval": fmt_interval(p.estimate.interval),
                "n": f"{p.estimate.interval.n} {p.estimate.interval.units}",
                "method": p.estimate.interval.method,
                "region (declared)": str(p.region),
                "part verdict": BADGE[p.verdict],
            }
            for p in ruling.parts
        ])]
    if ruling.gates:
        out += ["", markdown_table([
            {"gate": g.name, "passed": "✅ yes" if g.passed else "❌ no", "measured": g.detail} for g in ruling.gates
        ])]
    if ruling.to_decide:
        out += ["", f"What would decide: {ruling.to_decide}."]
    return "\n".join(out)


def provenance_section(records: list[ClaimRecord]) -> str:
    ran = [r for r in records if r.provenance]
    if not ran:
        return "## Provenance\n\nNo records."
    first = ran[0].provenance
    shared = {k: first.get(k) for k in SHARED_PROVENANCE}
    out = ["## Provenance", "", key_value_table(shared), ""]
    out += ["Packages: " + ", ".join(f"{k} {v}" for k, v in first.get("packages", {}).items()), ""]
    rows = [
        {
            "claim": r.claim.key,
            "model": r.model,
            "model source": r.provenance.get("model_source", "—"),
            "model sha256": (r.provenance.get("model_sha256") or "—")[:16],
            "data sha256": ", ".join(f"{k.split('/')[-1]}:{v[:12]}" for k, v in r.provenance.get("data_sha256", {}).items()) or "—",
            "threads": r.provenance.get("torch_threads"),
            "date": r.provenance.get("date"),
        }
        for r in ran
    ]
    out += [markdown_table(rows)]
    return "\n".join(out)


def benchmark_section(profile: str, root: Path | None = None) -> str:
    """The latest ``nox -s bench`` table for this profile, one heading level down; benchmarks run
    separately (they take minutes and want a quiet machine), so the report embeds what they last wrote."""
    path = profile_dir(profile, root) / BENCH_FILE
    if not path.is_file():
        return f"## Benchmarks\n\nNone yet: run `nox -s bench` to write `{BENCH_FILE}`, then `nox -s report -- {profile}`."
    body = path.read_text().split("\n", 1)[1]  # drop its own title
    body = "\n".join("#" + line if line.startswith("## ") else line for line in body.splitlines())
    return f"## Benchmarks\n\nFrom [`{BENCH_FILE}`]({BENCH_FILE}).\n{body}"


CROSSCHECK_FILE = "crosscheck.md"  # written by `nox -s crosscheck` (repro/crosscheck.py) next to the cpu report


def crosscheck_section(profile: str, root: Path | None = None) -> str:
    """The verdict line of the latest TransformerLens cross-check of the patching code, and a link to its table."""
    path = profile_dir(profile, root) / CROSSCHECK_FILE
    if not path.is_file():
        return f"## Cross-check with TransformerLens\n\nNone for profile `{profile}`: `nox -s crosscheck` writes `reports/cpu/{CROSSCHECK_FILE}`."
    verdict = next((line for line in path.read_text().splitlines() if line.startswith("**")), "(no verdict line)")
    return f"## Cross-check with TransformerLens\n\n{verdict} Table: [`{CROSSCHECK_FILE}`]({CROSSCHECK_FILE})."


def build_report(profile: str, root: Path | None = None) -> str:
    records = load_records(profile, root)
    by_claim: dict[str, list[ClaimRecord]] = defaultdict(list)
    for r in records:
        by_claim[r.claim.key].append(r)
    parts = [
        f"# Reproduction report — profile `{profile}`",
        "",
        f"Generated from {len(records)} result record(s) in `results/`; rebuild with `nox -s report -- {profile}`. "
        "A verdict that differs from the one a claim module declares fails its test, so a change in scientific "
        "outcome is never silent. Snapshots compare numbers with tolerance; timings are never snapshotted.",
        "",
        "## Verdicts",
        "",
        LEGEND,
        "",
        verdict_table(records),
        "",
        *(claim_section(rs) for rs in by_claim.values()),
        benchmark_section(profile, root),
        "",
        crosscheck_section(profile, root),
        "",
        provenance_section(records),
        "",
    ]
    return "\n".join(parts)


def write_report(profile: str, root: Path | None = None) -> Path:
    text = build_report(profile, root)
    return write_text_atomic(profile_dir(profile, root) / "report.md", text)

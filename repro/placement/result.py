"""The result of claim 6: paired walls at each rate, the parts, gates and ruling, the cost model's errors as
measured, the placement map, and the seed's consistency check."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from repro.files import write_json_atomic, write_text_atomic
from repro.placement.costmodel import Prediction, StageCosts, crossings
from repro.placement.placement import MODES, STAGES
from repro.placement.rounds import RateBlock
from repro.placement.verdict import PUBLISHED, SEED_SECONDS, headline, wall_estimates
from repro.profiles import HybridSettings
from repro.snapshots import rounded
from repro.verdicts import Estimate, Interval

TIMING_FILES = {"local": "timing_local_all.json", "remote": "timing_remote_all.json", "hybrid": "timing_hybrid.json"}
FIELDS = ("upload_s", "download_s", "compute_s", "wall_s")


@dataclass
class HybridResult:
    model: str
    settings: HybridSettings
    link_kind: str
    sites_kind: str  # how the sites were made to differ (or why they were not)
    cluster_settings: dict
    cold_start: dict[str, dict]  # site -> the model plugin's record
    n_pairs: int
    n_kept: int
    clean_ld_mean: float
    corrupted_ld_mean: float
    blocks: list[RateBlock]  # one per measured rate, the seed's link first
    costs: StageCosts
    slowdown: float  # measured: workstation / remote compute on the throttled stages
    stated_slowdown: float | None  # the quota's factor, None when nothing was throttled
    rankings: dict[float, list[Prediction]]  # rate -> all 16 predicted, fastest first
    validation_block: RateBlock
    validation_runs: list
    validation: list[dict]  # predicted vs measured, cache-shipping placements first
    placement_map: dict
    limits: dict
    seed: dict  # the consistency check of the seed's own means
    max_effect_diff: float
    max_logit_diff_diff: float
    retried: int
    gates: list
    ruling: object
    parts_by_rate: list[dict]
    reports: list[Path] = field(default_factory=list)  # Dask's performance reports, one per rate
    report_notes: list[str] = field(default_factory=list)  # why a report is missing
    figures: dict[str, Path] = field(default_factory=dict)
    timing_files: dict[str, Path] = field(default_factory=dict)

    # ---- tables ----

    def headlines(self) -> dict[float, str]:
        return {b.rate_mbit: headline(p).value for b, p in zip(self.blocks, self.parts_by_rate)}

    def stage_medians(self, block: RateBlock, mode: str) -> dict[str, dict[str, float]]:
        runs = block.runs(mode)
        return {s: {f: statistics.median(getattr(r.stages[s], f) for r in runs) for f in (*FIELDS, "bytes_moved")}
                for s in STAGES}

    def stage_table(self) -> list[dict]:
        """Per rate, stage and mode: median seconds over the recorded runs and the bytes moved; the cold start
        (model load and first run, once per site) as its own row."""
        rows = [{"rate_mbit": None, "stage": "cold start", "mode": site, "site": site, "upload_s": 0.0,
                 "download_s": 0.0, "compute_s": round(r["seconds"], 3), "wall_s": round(r["seconds"], 3),
                 "bytes_moved": 0, "seed_s": None} for site, r in sorted(self.cold_start.items())]
        for block in self.blocks:
            medians = {m: self.stage_medians(block, m) for m in MODES}
            for stage in STAGES:
                for mode in MODES:
                    med = medians[mode][stage]
                    rows.append({"rate_mbit": block.rate_mbit, "stage": stage, "mode": mode,
                                 "site": MODES[mode].site(stage), **{f: round(med[f], 3) for f in FIELDS},
                                 "bytes_moved": int(med["bytes_moved"]), "seed_s": SEED_SECONDS[stage][mode]})
            for mode in MODES:
                rows.append({"rate_mbit": block.rate_mbit, "stage": "total", "mode": mode, "site": MODES[mode].label,
                             **{f: round(sum(medians[mode][s][f] for s in STAGES), 3) for f in FIELDS[:3]},
                             "wall_s": round(statistics.median(r.wall_s for r in block.runs(mode)), 3),
                             "bytes_moved": int(sum(medians[mode][s]["bytes_moved"] for s in STAGES)),
                             "seed_s": round(sum(SEED_SECONDS[s][mode] for s in STAGES), 3)})
        return rows

    def prediction_rows(self) -> list[dict]:
        """All 16 placements at each measured rate, predicted, with the measured wall where one was run."""
        measured = {(v["rate_mbit"], v["placement"]): v["measured_s"] for v in self.validation}
        rows = []
        for rate, ranking in [*self.rankings.items(), (self.validation_block.rate_mbit, self._validation_ranking())]:
            rows += [{"rate_mbit": rate, "placement": p.placement.label, "name": p.placement.name,
                      "predicted_s": round(p.wall_s, 3), "network_s": round(p.network_s, 3),
                      "measured_s": _r(measured.get((rate, p.placement.label)))} for p in ranking]
        return rows

    def _validation_ranking(self) -> list[Prediction]:
        from repro.placement.optimiser import rank

        return rank(self.costs, self.validation_block.link)

    def measured_points(self) -> list[dict]:
        """The map's measured points: each rate at the measured slowdown, with the headline there."""
        return [{"rate_mbit": b.rate_mbit, "slowdown": self.slowdown, "headline": v}
                for b, v in zip(self.blocks, self.headlines().values())]

    def bytes_on_the_wire(self) -> dict:
        """Per rate and mode: the veth's count and Dask's estimate, medians per run, bytes up / down."""
        out = {}
        for block in self.blocks:
            for mode in MODES:
                runs = block.runs(mode)
                dask = [int(statistics.median(r.dask_bytes()[d] for r in runs)) for d in ("upload", "download")]
                text = f"Dask {dask[0]} / {dask[1]}"
                if all(r.veth_bytes for r in runs):
                    veth = [int(statistics.median(r.veth_bytes[d] for r in runs)) for d in ("upload", "download")]
                    text = f"veth {veth[0]} / {veth[1]}; " + text
                out[f"{block.rate_mbit:g} Mbit/s {mode}"] = text
        return out

    def machine_load(self) -> dict:
        """How busy the machine was during the recorded runs: load average, busy and steal shares."""
        runs = [r for b in self.blocks for r in b.all_runs()] + list(self.validation_runs)
        uses = [u for r in runs for u in r.machine.values()]
        throttled = [r.throttled for r in runs if r.throttled]
        return {"runs": len(runs), "load1 median [max]": f"{statistics.median(u['load1'] for u in uses):.2f} "
                f"[{max(u['load1'] for u in uses):.2f}]", "host busy share (median)": statistics.median(u["busy"] for u in uses),
                "steal share (max)": max(u["steal"] for u in uses),
                "CFS periods throttled (local, all runs)": sum(t["nr_throttled"] for t in throttled)}

    def moved_bytes(self) -> dict[str, int]:
        """Bytes over the link per named mode (from the cost model's crossings: deterministic but the PNG)."""
        return {m: int(sum(b for _, _, b in crossings(p, self.costs))) for m, p in MODES.items()}

    # ---- for the report and the snapshot ----

    def per_rate(self) -> dict:
        """One flat table per measured rate (the report renders each as its own table)."""
        out = {}
        for block, parts in zip(self.blocks, self.parts_by_rate):
            walls = wall_estimates(block)
            out[f"at {block.rate_mbit:g} Mbit/s"] = {
                "headline (Hybrid fastest)": headline(parts).value,
                "link measured": f"{block.link.bytes_per_s * 8 / 1e6:.3f} Mbit/s "
                                 f"({block.efficiency:.0%} of tbf), {1e3 * block.link.per_transfer_s:.1f} ms per transfer",
                **{f"mean wall s, {m} [95% t interval]": f"{e.value:.2f} [{e.interval.low:.2f}, {e.interval.high:.2f}] "
                   f"(n={e.interval.n})" for m, e in walls.items()},
                **{p.name: f"{_fmt(p.estimate)} -> {p.verdict.value}" for p in parts.values()},
                "round order": ", ".join(" ".join(m[0].upper() for m in o) for o in block.order),
            }
        return out

    def numbers(self) -> dict:
        errors = [v for v in self.validation if v["ships_cache"]]
        return {
            "link": self.link_kind,
            "sites": self.sites_kind,
            "cluster settings as found": self.cluster_settings,
            "workstation slowdown on throttled stages (measured / stated)":
                f"{self.slowdown:.2f}x / {self.stated_slowdown or 'none'}",
            "cold start per site (model plugin, s)": {s: round(r["seconds"], 2) for s, r in self.cold_start.items()},
            "pairs kept": f"{self.n_kept}/{self.n_pairs}",
            **self.per_rate(),
            "cost model errors, cache-shipping placements (as measured)": [
                f"{v['placement']} at {v['rate_mbit']:g} Mbit/s: predicted {v['predicted_s']:.2f} s, measured "
                f"{v['measured_s']:.2f} s ({v['error']:+.1%})" for v in errors],
            "cost model errors, named modes (in-sample medians)": [
                f"{v['name']} at {v['rate_mbit']:g} Mbit/s: {v['error']:+.1%}" for v in self.validation if not v["ships_cache"]],
            "map: where Hybrid stops being fastest (at the measured slowdown)": self.limits,
            "bytes on the wire per run, up / down (the veth's count vs Dask's estimate, medians)":
                self.bytes_on_the_wire(),
            "machine during the runs": self.machine_load(),
            "Dask performance reports": [str(p.name) for p in self.reports] + self.report_notes,
            "bytes per stage output": {"pairs": int(self.costs.input_bytes), **self.output_bytes()},
            self.seed["title"]: {k: str(v) if isinstance(v, dict) else v for k, v in self.seed.items() if k != "title"},
            "same science in every run: max |effect diff|, max |logit diff diff|": [
                float(f"{self.max_effect_diff:.2e}"), float(f"{self.max_logit_diff_diff:.2e}")],
            "runs retried after a worker died": self.retried,
            "per stage and mode (medians)": self.stage_table(),
        }

    def output_bytes(self) -> dict[str, int]:
        return {s: int(b) for s, b in self.costs.output_bytes.items()}

    def snapshot(self) -> dict:
        """Deterministic numbers only: sizes, bytes, the design, the seed's re-computation; never times."""
        seed = self.seed
        return {
            "model": self.model,
            "n_pairs": self.n_pairs,
            "n_kept": self.n_kept,
            "clean_logit_diff": rounded(self.clean_ld_mean),
            "corrupted_logit_diff": rounded(self.corrupted_ld_mean),
            "bytes": {"pairs": int(self.costs.input_bytes),
                      **{s: b for s, b in self.output_bytes().items() if s != "plot"}},
            "bytes_over_link": {m: b for m, b in self.moved_bytes().items() if m != "remote"},
            "rates_mbit": [b.rate_mbit for b in self.blocks],
            "round_order": [" ".join(m[0].upper() for m in o) for o in self.blocks[0].order],
            "seed_check_ordering": seed["ordering"],
            "seed_check_best": seed["best_placement"],
            "seed_check_wall_s": seed["wall_s"],
            "seed_totals": seed["totals_s"],
            "seed_saving": seed["hybrid_saving_vs_local"],
        }

    def key_number(self):
        """The ratio of the closer other mode's wall to Hybrid's at the seed's link (geometric mean over rounds)."""
        from repro.verdicts import KeyNumber

        parts = self.parts_by_rate[0]
        closer = min(("remote", "local"), key=lambda x: parts[x].estimate.value)
        e = parts[closer].estimate
        i = e.interval
        ratio = Interval(math.exp(i.low), math.exp(i.high), i.n, i.units, f"{i.method}, exponentiated", i.level)
        return KeyNumber(f"W_{closer} / W_hybrid at {self.blocks[0].rate_mbit:g} Mbit/s (the seed's link)",
                         round(math.exp(e.value), 4), "Hybrid fastest; seed's means: Remote/Hybrid 3.5/3.2 = 1.09",
                         interval=ratio)

    def measurement(self):
        from repro.verdicts import Measurement

        ruling, first = self.ruling, self.blocks[0]
        limits = self.limits
        notes = [
            f"Design: at each rate one unrecorded warm-up per mode, then {self.settings.rounds} Remote/Hybrid rounds "
            f"in ABBA order, {self.settings.local_rounds} of them with Local; statistic per round ln(W_X/W_Hybrid), "
            "95% t interval over rounds; every time on the scheduler's clock.",
            f"Sites: {self.sites_kind}. Measured slowdown {self.slowdown:.2f}x on {', '.join(self.settings.throttled_stages)}.",
            f"Verdict: the headline at the seed's link ({first.rate_mbit:g} Mbit/s, where the seed's means put ~20% of "
            f"Remote's time on the network); headlines per rate: {self.headlines()}. The side claims are parts "
            "with their own intervals and do not change the verdict.",
            f"Map (cost model, measured slowdown {self.slowdown:.2f}x): Hybrid predicted faster than Local and Remote "
            f"up to {_mbit(limits['fastest_up_to_mbit'])}, by >= 5% up to {_mbit(limits['by_5pct_up_to_mbit'])}; of "
            f"all 16 placements the fastest is {limits['best_at_lowest_rate']} on the slowest link of the map and "
            f"{limits['best_at_highest_rate']} on the fastest.",
            f"The {self.seed['title']} (not a reproduction; outside the verdict): {self.seed['ordering']}; the seed's "
            f"table totals {self.seed['totals_s']} s, a {self.seed['hybrid_saving_vs_local']:.0%} saving over "
            "Local, not the stated ~40%.",
            "This kernel has no netem: the shaped link has bandwidth but no added latency (0 ms in the cost model).",
        ]
        if ruling.to_decide:
            notes.append(f"What would decide: {ruling.to_decide}.")
        criteria = {p.name: p.estimate for parts in self.parts_by_rate for p in parts.values()}
        criteria.update({g.name: f"{'passed' if g.passed else 'FAILED'}: {g.detail}" for g in self.gates})
        return Measurement(verdict=ruling.verdict, key_number=self.key_number(), criteria=criteria,
                           numbers=self.numbers(), published=PUBLISHED, figures=list(self.figures.values()),
                           notes=notes, ruling=ruling)


def _fmt(e: Estimate) -> str:
    return f"{e.value:.3f} [{e.interval.low:.3f}, {e.interval.high:.3f}] (n={e.interval.n})"


def _mbit(x) -> str:
    return "no rate of the map" if x is None else f"{x:.3g} Mbit/s"


def _r(x, digits: int = 3):
    return None if x is None else round(float(x), digits)


def write_timings(result: HybridResult, folder: str | Path) -> dict[str, Path]:
    """The seed's three files (per rate and stage: upload, download, compute, wall and bytes, medians and every
    recorded run; plus the logit diff), the combined table as JSON and markdown, the 16 placements' predictions
    and the map. Written only once every run has finished (a stopped run leaves none)."""
    folder = Path(folder)
    written = {}
    for mode, name in TIMING_FILES.items():
        written[mode] = write_json_atomic(folder / name, {
            "mode": mode, "placement": MODES[mode].as_dict(), "model": result.model, "link": result.link_kind,
            "sites": result.sites_kind,
            "rates": [{"rate_mbit": b.rate_mbit, "stages": result.stage_medians(b, mode),
                       "runs": [_run_record(r) for r in b.runs(mode)]} for b in result.blocks],
            "logit_diff": {"clean_mean": result.clean_ld_mean, "corrupted_mean": result.corrupted_ld_mean},
        })
    rows = result.stage_table()
    written["table_json"] = write_json_atomic(folder / "timing_table.json", rows)
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows]
    written["table_md"] = write_text_atomic(folder / "timing_table.md", "\n".join(lines) + "\n")
    written["placements"] = write_json_atomic(folder / "placements.json", {
        "predictions": result.prediction_rows(), "validation": result.validation,
        "validation_runs": [_run_record(r) for r in result.validation_runs]})
    written["map"] = write_json_atomic(folder / "placement_map.json", {**result.placement_map, "limits": result.limits})
    return written


def _run_record(run) -> dict:
    return {"placement": run.placement.label, "wall_s": run.wall_s, "retried": run.retried,
            "veth_bytes": run.veth_bytes, "dask_bytes": run.dask_bytes(), "machine": run.machine,
            "throttled": run.throttled,
            "stages": {s: {f: getattr(t, f) for f in (*FIELDS, "bytes_moved", "output_bytes")}
                       for s, t in run.stages.items()}}

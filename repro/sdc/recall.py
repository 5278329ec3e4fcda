"""What each detector caught, from the results log's entries: recall on harmful faults (all, non-trivial,
beyond the trivial checks), per stratum and re-weighted to the uniform mix, and which check caught what.

Units: one fault is one independent trial (its own seeded draw of window, layer, element and bits), so a
proportion of faults gets an exact binomial interval (Clopper-Pearson, ``repro.intervals``). The
re-weighted recall combines strata: sum over cells c of w_c r_c, with r_c the recall on every harmful fault
in cell c (``repro.sdc.strata.cell``, however it was drawn) and w_c the share of cell c among the uniform
anchor's harmful faults; its interval is a percentile bootstrap over faults (the weights are estimated too).
"""

from __future__ import annotations

import numpy as np

from repro.intervals import binomial_estimate, bootstrap_distribution
from repro.sdc.detection import DETECTORS, TRIVIAL
from repro.sdc.strata import CELLS, STRATA
from repro.verdicts import Estimate, Interval

UNITS = "harmful faults"


def as_float(x) -> float:
    """A number from the log: non-finite floats are stored as text ('inf', 'nan')."""
    return float("nan") if x is None else float(x)


def harmful(faults: list[dict]) -> list[dict]:
    return [f for f in faults if f["harmful"]]


def nontrivial(faults: list[dict]) -> list[dict]:
    return [f for f in faults if f["harmful"] and f["nontrivial"]]


def beyond_trivial(faults: list[dict]) -> list[dict]:
    """Harmful faults that neither the finiteness check nor the q/k/v envelopes caught (the bounds detector's
    record; the checksum detector keeps the same envelopes)."""
    return [f for f in harmful(faults) if not set(f["bounds"]["checks"]) & set(TRIVIAL)]


def recall(faults: list[dict], detector: str, units: str = UNITS) -> Estimate | None:
    """Detected share of ``faults`` (already the harmful ones of interest); None when there are none."""
    if not faults:
        return None
    return binomial_estimate(sum(f[detector]["detected"] for f in faults), len(faults), units=units)


def reweighted(faults: list[dict], detector: str) -> Estimate | None:
    """Recall re-weighted to the uniform mix (module docstring); None without harmful anchor faults."""
    cells = {c: i for i, c in enumerate(CELLS)}
    index = np.array([cells[f["cell"]] if f.get("cell") in cells else cells["other"] for f in faults])
    hit = np.eye(len(CELLS))[index]  # [faults, cells] one-hot
    is_harmful = np.array([f["harmful"] for f in faults], dtype=float)[:, None]
    anchor = np.array([f["stratum"] == "uniform" for f in faults], dtype=float)[:, None]
    caught = np.array([f[detector]["detected"] for f in faults], dtype=float)[:, None]
    a, h, d = hit * is_harmful * anchor, hit * is_harmful, hit * is_harmful * caught
    if len(faults) < 2 or not a.sum():
        return None

    def statistic(idx: np.ndarray) -> np.ndarray:  # [rows, n] -> [rows]; NaN: no harmful anchor fault drawn
        weights = a[idx].sum(1)
        total = weights.sum(1, keepdims=True)
        rates = d[idx].sum(1) / np.maximum(h[idx].sum(1), 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (weights / total * rates).sum(1)

    value = float(statistic(np.arange(len(faults))[None, :])[0])
    draws = bootstrap_distribution(len(faults), statistic)
    kept = draws[np.isfinite(draws)]
    low, high = np.percentile(kept, [2.5, 97.5]) if len(kept) else (np.nan, np.nan)
    method = (f"percentile bootstrap over faults, {len(draws)} resamples ({len(draws) - len(kept)} without a harmful "
              f"anchor fault dropped); weights from {int(a.sum())} harmful uniform-anchor faults")
    return Estimate(value, Interval(float(low), float(high), len(faults), "faults", method))


def by_stratum(faults: list[dict], key: str = "stratum") -> list[dict]:
    """One row per stratum (or cell): faults, harmful, non-trivial, each detector's recall on both."""
    names = STRATA if key == "stratum" else CELLS
    rows = []
    for name in names:
        group = [f for f in faults if f.get(key) == name]
        if not group:
            continue
        row = {key: name, "faults": len(group), "harmful": len(harmful(group)), "nontrivial": len(nontrivial(group))}
        for detector in DETECTORS:
            row[f"{detector} recall"] = recall(harmful(group), detector)
            row[f"{detector} recall, non-trivial"] = recall(nontrivial(group), detector)
        rows.append(row)
    return rows


def checks_caught(faults: list[dict], detector: str) -> list[dict]:
    """For each check: on how many detected harmful faults it fired, and on how many it was the only one."""
    caught = [f for f in harmful(faults) if f[detector]["detected"]]
    return [{"detector": detector, "check": check,
             "fired": sum(check in f[detector]["checks"] for f in caught),
             "only this check": sum(f[detector]["checks"] == [check] for f in caught)}
            for check in DETECTORS[detector].CHECKS]


def bound_gap(faults: list[dict], detector: str) -> dict[str, float]:
    """How far below its bound each check stayed on the harmful faults the detector missed: the median and
    maximum utilisation per check (1 = at the bound)."""
    missed = [f for f in harmful(faults) if not f[detector]["detected"]]
    out = {}
    for check in DETECTORS[detector].CHECKS:
        uses = [as_float(f[detector]["use"][check]) for f in missed]
        uses = [u for u in uses if np.isfinite(u)]
        if uses:
            out[f"{check} median"] = float(np.median(uses))
            out[f"{check} max"] = float(np.max(uses))
    return out


def detector_summary(faults: list[dict], detector: str) -> dict:
    return {
        "recall": recall(harmful(faults), detector),
        "recall_nontrivial": recall(nontrivial(faults), detector, units="non-trivial harmful faults"),
        "recall_beyond_trivial": recall(beyond_trivial(faults), detector,
                                        units="harmful faults the finite and envelope checks miss"),
        "recall_reweighted": reweighted(faults, detector),
    }

"""The result of claim 4 on one model: detection and harm counts, clean false positives, tightness."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from repro.sdc.bounds import kim_lipschitz_term, lambert_gap_bound
from repro.sdc.detection import CHECKS
from repro.sdc.injection import BIT_CLASSES, LOCATIONS
from repro.sdc.verdict import PUBLISHED, RECALL_PARTIAL, RECALL_REPRODUCED, sdc_verdict
from repro.snapshots import rounded
from repro.verdicts import KeyNumber, Measurement


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def counts(faults: list[dict]) -> dict:
    return {
        "n": len(faults),
        "harmful": sum(f["harmful"] for f in faults),
        "detected": sum(f["detected"] for f in faults),
        "detected_harmful": sum(f["harmful"] and f["detected"] for f in faults),
    }


@dataclass
class SDCResult:
    model: str
    faults: list[dict]  # one per configuration, as in the results log
    clean_calls: int
    clean_flagged: int
    clean_checks_fired: dict[str, int]  # check -> clean calls it flagged
    tightness: dict[str, list[float]]  # check -> the worst utilisation of each clean call
    window_len: int
    sweep: str
    figures: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    # ---- summaries ----
    @property
    def totals(self) -> dict:
        return counts(self.faults)

    @property
    def recall(self) -> float | None:
        t = self.totals
        return _ratio(t["detected_harmful"], t["harmful"])

    @property
    def precision(self) -> float | None:
        t = self.totals
        return _ratio(t["detected_harmful"], t["detected"])

    def by_location_class(self) -> dict[str, dict[str, dict]]:
        return {loc: {cls: counts([f for f in self.faults if f["location"] == loc and f["bit_class"] == cls])
                      for cls in BIT_CLASSES} for loc in LOCATIONS}

    def escapes(self) -> list[dict]:
        """Harmful faults no check flagged."""
        return [f for f in self.faults if f["harmful"] and not f["detected"]]

    def escape_summary(self) -> dict[str, int]:
        return dict(sorted(Counter(f"{f['location']}/{f['bit_class']}" for f in self.escapes()).items()))

    def checks_fired(self) -> dict[str, int]:
        return {check: sum(check in f["checks"] for f in self.faults) for check in CHECKS}

    def verdict(self):
        return sdc_verdict(self.recall, self.clean_flagged)

    # ---- records ----
    def measurement(self) -> Measurement:
        t = self.totals
        recall = self.recall
        notes = [
            f"{t['n']} faults ({self.sweep}, windows of {self.window_len} tokens): {t['harmful']} harmful, "
            f"{t['detected']} detected, {t['detected_harmful']} harmful and detected; "
            f"{self.clean_flagged} of {self.clean_calls} clean attention calls flagged.",
            "Harmful = top-1 change at any position, mean loss up > 1%, or NaN/Inf logits.",
        ]
        if t["harmful"]:
            from scipy.stats import beta

            k, n = t["detected_harmful"], t["harmful"]
            low = float(beta.ppf(0.05, k, n - k + 1)) if k else 0.0
            notes.append(f"Recall {k}/{n}: its one-sided 95% lower confidence bound (Clopper-Pearson) is {low:.1%}; "
                         "few faults are harmful, so the rule's 99% is checked on a small sample.")
        if self.escapes():
            notes.append(f"Harmful faults that escaped (location/bit class: count): {self.escape_summary()}. "
                         "A flip that leaves every intermediate consistent with the others (a sign flip of a score, "
                         "a value flip inside the weights' envelope, an output flip inside the values' range) "
                         "violates no bound: the bounds check consistency, not correctness.")
        return Measurement(
            verdict=self.verdict(),
            key_number=KeyNumber("recall on harmful faults", recall, "all targeted INF/NaN (ATTNChecker)"),
            criteria={"recall": recall, "recall_reproduced": RECALL_REPRODUCED, "recall_partial": RECALL_PARTIAL,
                      "clean_false_positives": self.clean_flagged, "clean_calls": self.clean_calls},
            numbers={
                **{f"faults_{k}": v for k, v in t.items()},
                "precision": self.precision,
                "clean_fp_rate": _ratio(self.clean_flagged, self.clean_calls),
                "checks_fired": self.checks_fired(),
                "clean_checks_fired": self.clean_checks_fired,
                "escapes": self.escape_summary(),
                "by_location_class": self.by_location_class(),
                "lambert_gap_bound_at_window": float(lambert_gap_bound(self.window_len)),
                "kim_lipschitz_term_at_window": float(kim_lipschitz_term(self.window_len)),
                "seconds": self.seconds,
            },
            published=PUBLISHED,
            figures=list(self.figures),
            notes=notes,
        )

    def snapshot(self) -> dict:
        return {
            "faults": self.totals,
            "by_location_class": self.by_location_class(),
            "clean_calls": self.clean_calls,
            "clean_false_positives": self.clean_flagged,
            "recall": rounded(self.recall),
            "precision": rounded(self.precision),
        }

"""The result of claim 4 on one model: harm, both detectors' recall with intervals (all, non-trivial,
beyond the trivial checks, per stratum, re-weighted), which check caught what, false alarms, the
DistilBERT companion, and the verdict."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from repro.intervals import binomial_estimate
from repro.sdc import recall as rc
from repro.sdc.bidirectional import Companion
from repro.sdc.bounds import kim_lipschitz_term, lambert_gap_bound
from repro.sdc.detection import DETECTORS
from repro.sdc.verdict import PUBLISHED, sdc_ruling
from repro.snapshots import rounded
from repro.verdicts import Estimate, KeyNumber, Measurement

CLAIM_DETECTOR = "bounds"


def _value(estimate: Estimate | None) -> float | None:
    return None if estimate is None else estimate.value


@dataclass
class SDCResult:
    model: str
    dtype: str
    faults: list[dict]  # one per configuration, as in the results log
    clean_calls: dict[str, int]  # detector -> clean attention calls (x batch elements) checked
    clean_flagged: dict[str, int]  # detector -> of those, flagged
    clean_checks_fired: dict[str, dict[str, int]]  # detector -> check -> clean calls it flagged
    tightness: dict[str, dict[str, list[float]]]  # detector -> check -> worst utilisation of each clean call
    window_len: int
    sweep: str
    companion: Companion | None = None
    figures: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    # ---- summaries ----
    @property
    def totals(self) -> dict:
        f = self.faults
        return {"n": len(f), "harmful": len(rc.harmful(f)), "nontrivial": len(rc.nontrivial(f)),
                "beyond_trivial": len(rc.beyond_trivial(f)), "nonfinite": sum(x["nonfinite"] for x in f),
                "top1_changed_any": sum(x["top1_changed"] > 0 for x in f),
                **{f"detected_{d}": sum(x[d]["detected"] for x in f) for d in DETECTORS},
                **{f"detected_harmful_{d}": sum(x[d]["detected"] for x in rc.harmful(f)) for d in DETECTORS}}

    def summary(self, detector: str) -> dict:
        return rc.detector_summary(self.faults, detector)

    def false_alarms(self, detector: str) -> Estimate:
        return binomial_estimate(self.clean_flagged[detector], self.clean_calls[detector],
                                 units="clean attention calls")

    def escapes(self, detector: str = CLAIM_DETECTOR) -> list[dict]:
        return [f for f in rc.harmful(self.faults) if not f[detector]["detected"]]

    def escape_summary(self, detector: str = CLAIM_DETECTOR) -> dict[str, int]:
        return dict(sorted(Counter(f"{f['stratum']}/{f['location']}/{f['bit_class']}"
                                   for f in self.escapes(detector)).items()))

    def ruling(self):
        from repro.profiles import PROFILES
        from repro.sdc.sweeps import template

        # Non-trivial harmful faults each profile would give, scaled by its sweep size (for "what would decide").
        n_nt, n = len(rc.nontrivial(self.faults)), max(len(self.faults), 1)
        sizes = {name: sum(c for _, c in (p.sdc.strata or template(p.sdc.sweep).strata)) for name, p in PROFILES.items()}
        return sdc_ruling(self.summary(CLAIM_DETECTOR)["recall_nontrivial"], self.false_alarms(CLAIM_DETECTOR),
                          units_by_profile={name: round(n_nt * size / n) for name, size in sizes.items()})

    def verdict(self):
        return self.ruling().verdict

    def companion_rows(self) -> list[dict]:
        if self.companion is None:
            return []
        rows = []
        for name, faults in ((self.model, self.faults), ("distilbert-random", self.companion.faults)):
            for detector in DETECTORS:
                s = rc.detector_summary(faults, detector)
                calls = self.clean_calls if faults is self.faults else self.companion.clean_calls
                flagged = self.clean_flagged if faults is self.faults else self.companion.clean_flagged
                rows.append({"model": name, "detector": detector, "faults": len(faults),
                             "harmful": len(rc.harmful(faults)), "recall": s["recall"],
                             "recall, non-trivial": s["recall_nontrivial"],
                             "recall beyond finite+envelopes": s["recall_beyond_trivial"],
                             "clean calls flagged": f"{flagged[detector]} of {calls[detector]}"})
        return rows

    # ---- records ----
    def measurement(self) -> Measurement:
        t, ruling = self.totals, self.ruling()
        bounds, checksum = self.summary("bounds"), self.summary("checksum")
        key = bounds["recall_nontrivial"]
        notes = [
            f"{t['n']} faults ({self.sweep}, {self.dtype}, windows of {self.window_len} tokens): {t['harmful']} harmful "
            f"({t['nontrivial']} non-trivial, {t['beyond_trivial']} missed by the finite and envelope checks), "
            f"{t['nonfinite']} with non-finite logits; {t['top1_changed_any']} changed some top-1 prediction at all.",
            "Harmful = non-finite logits, a top-1 change where the clean prediction was confident (margin >= 0.1), "
            "or KL(clean || faulty) > 0.1 nats at some position. Non-trivial = finite logits and a corrupted value "
            "under 10x the clean magnitude at its site.",
            "Recall beyond finite+envelopes: recall on the harmful faults that the finiteness check and the q/k/v "
            "envelopes miss: what the bounds (Cauchy-Schwarz, row sums, softmax interval, Lambert W, output range) "
            "or the checksums add.",
        ]
        if self.escapes():
            notes.append(f"Harmful faults the bounds detector missed (stratum/location/bit class: count): "
                         f"{self.escape_summary()}. A flip that leaves every intermediate consistent with the others "
                         "(a score's sign, a value inside the weights' envelope, an output inside the values' range) "
                         "violates no bound: the bounds check consistency, not correctness.")
        by_detector = {}
        for name, s in (("bounds", bounds), ("checksum", checksum)):
            by_detector.update({f"{name}: recall, harmful": s["recall"],
                                f"{name}: recall, non-trivial harmful": s["recall_nontrivial"],
                                f"{name}: recall beyond finite+envelopes": s["recall_beyond_trivial"],
                                f"{name}: recall re-weighted to the uniform mix": s["recall_reweighted"],
                                f"{name}: false alarms on clean calls": self.false_alarms(name)})
        return Measurement(
            verdict=ruling.verdict,
            key_number=KeyNumber("bounds detector's recall on non-trivial harmful faults", _value(key),
                                 "all targeted INF/NaN (ATTNChecker)", interval=key.interval if key else None),
            criteria={"recall_nontrivial": key, "false_alarm_rate": self.false_alarms(CLAIM_DETECTOR),
                      "nontrivial_harmful_faults": t["nontrivial"], "clean_calls": self.clean_calls[CLAIM_DETECTOR]},
            numbers={
                **{f"faults_{k}": v for k, v in t.items()},
                **by_detector,
                "lambert_gap_bound_at_window": float(lambert_gap_bound(self.window_len)),
                "kim_lipschitz_term_at_window": float(kim_lipschitz_term(self.window_len)),
                "recall by stratum (as drawn)": rc.by_stratum(self.faults),
                "recall by cell (what was hit)": rc.by_stratum(self.faults, key="cell"),
                "which check caught what (detected harmful faults)": [
                    row for d in DETECTORS for row in rc.checks_caught(self.faults, d)],
                "clean calls each check flagged": [{"detector": d, **fired} for d, fired in self.clean_checks_fired.items()],
                "detection across models (DistilBERT: random init, bidirectional)": self.companion_rows(),
                "bound gap of missed harmful faults (bounds detector)": rc.bound_gap(self.faults, "bounds"),
                "escapes (bounds detector)": self.escape_summary(),
                "seconds": self.seconds,
            },
            published=PUBLISHED,
            figures=list(self.figures),
            notes=notes,
            ruling=ruling,
        )

    def snapshot(self) -> dict:
        """Counts and rounded recalls: the same on every run (the float results are deterministic per dtype)."""
        per_detector = {d: {k: rounded(_value(v)) for k, v in self.summary(d).items() if k != "recall_reweighted"}
                        for d in DETECTORS}
        # Counts that sit on no tolerance's edge: a benign fault's detection and a raw top-1 change of 1e-3
        # logits can move with the thread count, so they stay in the record, not in the snapshot.
        totals = {k: v for k, v in self.totals.items() if k not in ("top1_changed_any", *(f"detected_{d}" for d in DETECTORS))}
        return {
            "faults": totals,
            "by_stratum": {row["stratum"]: [row["faults"], row["harmful"], row["nontrivial"]]
                           for row in rc.by_stratum(self.faults)},
            "recall": per_detector,
            "clean_calls": self.clean_calls,
            "clean_flagged": self.clean_flagged,
        }

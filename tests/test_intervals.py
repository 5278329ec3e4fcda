"""Calibration of every interval method the suite decides verdicts with (``repro.intervals``), on simulated
data with a known truth: 95% intervals cover the truth in 90-99% of 200+ simulations; a region decision
built on them reproduces a claim with no effect in at most 7% of simulations and a clear effect with
enough units in at least 90%. The checker itself is tested: a deliberately broken method (an interval
made too narrow) must fail it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from repro.intervals import (
    binomial_estimate,
    bootstrap_estimate,
    column_permutation_p,
    mean_of,
    row_spearman,
    t_estimate,
    two_way_bootstrap_estimate,
)
from repro.verdicts import Estimate, Interval, Region, Verdict

SIMULATIONS = 200
COVERAGE = (0.90, 0.99)
FALSE_REPRODUCED_MAX = 0.07
POWER_MIN = 0.90

Method = Callable[[np.ndarray], Estimate]  # simulated sample -> estimate of its mean (or proportion)


def _bootstrap(method: str) -> Method:
    return lambda x: bootstrap_estimate(len(x), mean_of(x), units="units", method=method, n_resamples=999)


def _median(x: np.ndarray) -> Estimate:  # claim 3's statistic: the median of per-pair ratios
    return bootstrap_estimate(len(x), lambda idx: np.median(x[idx], axis=1), units="pairs", method="percentile",
                              n_resamples=999)


METHODS: dict[str, tuple[Method, Callable[[np.random.Generator, float], np.ndarray]]] = {
    # name: (method, draw(rng, true mean) -> sample); skewed data where a method claims to handle it
    "BCa bootstrap": (_bootstrap("BCa"), lambda rng, mu: rng.exponential(1.0, 40) - 1.0 + mu),
    "percentile bootstrap": (_bootstrap("percentile"), lambda rng, mu: rng.normal(mu, 1.0, 40)),
    "percentile bootstrap of a median": (_median, lambda rng, m: m * rng.lognormal(0.0, 0.3, 41)),
    "t": (lambda x: t_estimate(x, units="rounds"), lambda rng, mu: rng.normal(mu, 1.0, 8)),
    "exact binomial": (
        lambda x: binomial_estimate(int(x.sum()), len(x), units="trials"),
        lambda rng, p: (rng.random(120) < p).astype(float),
    ),
}
# (truth on the region's boundary, clear effect) per method, and the region "the effect exceeds the boundary"
SCENARIOS = {"BCa bootstrap": (0.0, 0.7), "percentile bootstrap": (0.0, 0.7), "percentile bootstrap of a median": (2.0, 2.6),
             "t": (0.0, 1.6), "exact binomial": (0.8, 0.95)}


def coverage(method: Method, draw, truth: float, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(SIMULATIONS):
        i = method(draw(rng, truth)).interval
        hits += i.low <= truth <= i.high
    return hits / SIMULATIONS


def reproduced_rate(method: Method, draw, truth: float, region: Region, seed: int = 1) -> float:
    rng = np.random.default_rng(seed)
    return float(np.mean([region.decide(method(draw(rng, truth)).interval) == Verdict.REPRODUCED
                          for _ in range(SIMULATIONS)]))


@pytest.mark.parametrize("name", METHODS)
def test_95_percent_intervals_cover_the_truth(name):
    method, draw = METHODS[name]
    truth = SCENARIOS[name][1]
    assert COVERAGE[0] <= coverage(method, draw, truth) <= COVERAGE[1]


@pytest.mark.parametrize("name", METHODS)
def test_no_effect_is_rarely_reproduced_and_a_clear_effect_usually_is(name):
    method, draw = METHODS[name]
    boundary, effect = SCENARIOS[name]
    region = Region(low=boundary)
    assert reproduced_rate(method, draw, boundary, region) <= FALSE_REPRODUCED_MAX
    assert reproduced_rate(method, draw, effect, region) >= POWER_MIN


def test_the_calibration_check_catches_an_interval_made_too_narrow():
    """A method whose interval is half as wide as it should be: the coverage check must fail it."""
    method, draw = METHODS["t"]

    def too_narrow(x):
        e = method(x)
        i = e.interval
        return Estimate(e.value, Interval(e.value - i.half_width / 2, e.value + i.half_width / 2, i.n, i.units, "broken"))

    assert not COVERAGE[0] <= coverage(too_narrow, draw, 1.6) <= COVERAGE[1]
    assert reproduced_rate(too_narrow, draw, 0.0, Region(low=0.0)) > FALSE_REPRODUCED_MAX


def test_region_decisions():
    region = Region(low=2.0)
    decide = lambda lo, hi: region.decide(Interval(lo, hi, 10, "pairs", "test"))  # noqa: E731
    assert decide(2.1, 3.0) == Verdict.REPRODUCED
    assert decide(1.0, 2.0) == Verdict.NOT_REPRODUCED  # the whole interval excludes every effect > 2
    assert decide(1.5, 2.5) == Verdict.INCONCLUSIVE
    assert decide(float("nan"), 3.0) == Verdict.INCONCLUSIVE
    band = Region(0.75, 0.92)
    assert band.decide(Interval(0.8, 0.9, 5, "pairs", "test")) == Verdict.REPRODUCED
    assert band.decide(Interval(0.93, 0.99, 5, "pairs", "test")) == Verdict.NOT_REPRODUCED
    with pytest.raises(ValueError, match="unbounded"):
        Region()


def test_a_degenerate_bca_falls_back_to_the_percentile_interval_and_says_so():
    e = bootstrap_estimate(10, lambda idx: np.zeros(len(idx)), units="pairs")  # constant: no jackknife spread
    assert (e.value, e.interval.low, e.interval.high) == (0.0, 0.0, 0.0)
    assert e.interval.method.startswith("percentile (BCa degenerate)")


# ---- crossed designs (claim 2: edits x pieces): two-way bootstrap and joint column permutation ----
# Simulated tables whose columns (pieces) carry effects of their own on both variables, shared by every
# row (edit), as in claim 2's null: x[e, j] = a_j + noise, y[e, j] = (b_j + beta x[e, j] + noise) * s_e.
# The statistic is claim 2's: the mean over rows of the per-row Spearman rho.

CROSSED_ROWS, CROSSED_COLS, CROSSED_RESAMPLES = 8, 20, 199


def _crossed(rng: np.random.Generator, beta: float) -> tuple[np.ndarray, np.ndarray]:
    a, b = rng.normal(size=CROSSED_COLS), rng.normal(size=CROSSED_COLS)
    x = a[None] + rng.normal(size=(CROSSED_ROWS, CROSSED_COLS))
    y = (b[None] + beta * x + rng.normal(size=(CROSSED_ROWS, CROSSED_COLS))) * rng.lognormal(size=(CROSSED_ROWS, 1))
    return x, y


def _crossed_truth(beta: float) -> float:
    """E[Spearman rho] of n = CROSSED_COLS bivariate normal pairs with Pearson r (Moran 1948): within a row
    the pairs are iid with Var x = 2, Cov = 2 beta, Var y = 2 + 2 beta^2 (the row scale leaves ranks alone)."""
    r, n = beta / np.sqrt(1 + beta**2), CROSSED_COLS
    return float(6 / (np.pi * (n + 1)) * (np.arcsin(r) + (n - 2) * np.arcsin(r / 2)))


def _two_way(x, y, seed):
    def statistic(rows, cols):
        at = (rows[:, :, None], cols[:, None, :])
        return np.nanmean(row_spearman(x[at], y[at]), axis=-1)
    return two_way_bootstrap_estimate(CROSSED_ROWS, CROSSED_COLS, statistic, units="edits", col_units="pieces",
                                      n_resamples=CROSSED_RESAMPLES, seed=seed)


def _ranks(v):
    r = stats.rankdata(v, axis=-1)
    r = r - r.mean(-1, keepdims=True)
    return r / np.linalg.norm(r, axis=-1, keepdims=True)


def _joint_p(x, y, seed):
    rx, ry = _ranks(x), _ranks(y)  # a column permutation permutes the ranks: no re-ranking needed
    return column_permutation_p(CROSSED_COLS, lambda p: np.einsum("en,ebn->be", rx, ry[:, p]).mean(1),
                                n_permutations=CROSSED_RESAMPLES, seed=seed)


def _within_row_p(x, y, seed):
    """The broken test: each row permuted on its own, as if the rows shared no columns."""
    rx, ry = _ranks(x), _ranks(y)
    observed = float((rx * ry).sum(1).mean())
    rng = np.random.default_rng(seed)
    shuffled = rng.permuted(np.broadcast_to(ry, (CROSSED_RESAMPLES, *ry.shape)).copy(), axis=2)
    return (1 + int(((rx[None] * shuffled).sum(2).mean(1) >= observed - 1e-12).sum())) / (1 + CROSSED_RESAMPLES)


def _rows_only(x, y, seed):
    """The broken interval: rows resampled, columns held fixed (a cluster bootstrap over edits)."""
    rho = row_spearman(x, y)
    return bootstrap_estimate(CROSSED_ROWS, lambda idx: rho[idx].mean(1), units="edits", method="percentile",
                              n_resamples=CROSSED_RESAMPLES, seed=seed)


def _crossed_rates(beta: float, seed: int = 0) -> dict[str, float]:
    rng, truth = np.random.default_rng(seed), _crossed_truth(beta)
    hits = {"two-way covers": 0, "two-way reproduces": 0, "joint rejects": 0, "within-row rejects": 0, "rows-only covers": 0}
    for s in range(SIMULATIONS):
        x, y = _crossed(rng, beta)
        interval = _two_way(x, y, s).interval
        hits["two-way covers"] += interval.low <= truth <= interval.high
        hits["two-way reproduces"] += Region(low=0.0).decide(interval) == Verdict.REPRODUCED
        hits["joint rejects"] += _joint_p(x, y, s) < 0.05
        hits["within-row rejects"] += _within_row_p(x, y, s) < 0.05
        rows_only = _rows_only(x, y, s).interval
        hits["rows-only covers"] += rows_only.low <= truth <= rows_only.high
    return {k: v / SIMULATIONS for k, v in hits.items()}


def test_crossed_null_two_way_bootstrap_covers_and_the_joint_permutation_holds_its_level():
    """No association, pieces with effects of their own: the two-way interval covers 0 (it errs wide:
    it counts the row x column interaction twice), the joint permutation rejects at most 7%, and the
    rule 'interval above 0' reproduces at most 7%; the methods that ignore the shared columns fail."""
    rates = _crossed_rates(beta=0.0)
    assert COVERAGE[0] <= rates["two-way covers"] < 1.0, rates
    assert rates["joint rejects"] <= FALSE_REPRODUCED_MAX and rates["two-way reproduces"] <= FALSE_REPRODUCED_MAX, rates
    assert rates["within-row rejects"] > FALSE_REPRODUCED_MAX and rates["rows-only covers"] < COVERAGE[0], rates


def test_crossed_clear_effect_is_covered_and_detected():
    rates = _crossed_rates(beta=0.8, seed=1)
    assert COVERAGE[0] <= rates["two-way covers"] and rates["two-way reproduces"] >= POWER_MIN, rates
    assert rates["joint rejects"] >= POWER_MIN, rates


# ---- block bootstrap (autocorrelated series) ----

from repro.intervals import block_bootstrap_estimate, segment_sums  # noqa: E402

AR_PHI, AR_LEN, AR_BLOCK = 0.7, 2000, 50  # integrated autocorrelation time (1 + phi) / (1 - phi) ~ 5.7 values


def _ar1(rng: np.random.Generator, mu: float) -> np.ndarray:
    """An AR(1) series of unit variance around ``mu``: neighbours correlate as per-token losses along a text do."""
    shocks = rng.normal(0.0, np.sqrt(1 - AR_PHI**2), AR_LEN)
    x = np.empty(AR_LEN)
    x[0] = rng.normal()
    for t in range(1, AR_LEN):
        x[t] = AR_PHI * x[t - 1] + shocks[t]
    return x + mu


def _block(x):
    return block_bootstrap_estimate(x, block_len=AR_BLOCK, n_resamples=999)


def test_block_bootstrap_is_calibrated_on_autocorrelated_data():
    # Clear effect: 0.6 ~ 4 standard errors of the mean of 2000 AR(1) values with phi 0.7.
    assert COVERAGE[0] <= coverage(_block, _ar1, 0.6) <= COVERAGE[1]
    assert reproduced_rate(_block, _ar1, 0.0, Region(low=0.0)) <= FALSE_REPRODUCED_MAX
    assert reproduced_rate(_block, _ar1, 0.6, Region(low=0.0)) >= POWER_MIN
    # Why blocks: an interval that treats the 2000 values as independent is far too narrow on the same data.
    naive = lambda x: t_estimate(x, units="values")  # noqa: E731
    assert coverage(naive, _ar1, 0.6) < COVERAGE[0]


def test_segments_keep_every_value_and_name_the_unit():
    sums, counts = segment_sums(np.arange(7.0), block_len=3)
    assert sums.tolist() == [3.0, 12.0, 6.0] and counts.tolist() == [3.0, 3.0, 1.0]
    e = block_bootstrap_estimate(np.arange(7.0), block_len=3, units="segments")
    assert e.value == pytest.approx(3.0) and e.interval.n == 3 and "block bootstrap over segments of 3" in e.interval.method


"""95% intervals over a claim's independent units, made by scipy.stats (nothing hand-rolled).

Every judged number in the suite is an ``Estimate`` from one of these functions, and says which: the
method and the units go into the record and the report. ``tests/test_intervals.py`` checks each method's
coverage on simulated data with a known truth, and that a region decision built on it neither reproduces
a claim that is false nor misses one that is true.

- ``bootstrap_estimate``: any statistic of units resampled with replacement (pairs, edits, faults, ...);
  BCa by default, percentile for statistics that take few distinct values (e.g. the layer of a top head).
- ``binomial_estimate``: a proportion of independent trials, exact (Clopper-Pearson).
- ``t_estimate``: the mean of independent values (paired rounds' log ratios, seeds).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy import stats

from repro.verdicts import Estimate, Interval

LEVEL = 0.95
RESAMPLES = 2000  # bootstrap resamples: the interval's ends move by well under its width between seeds
BOOTSTRAP_SEED = 0  # resampling is seeded so a rerun on the same data gives the same interval
BOOTSTRAP_METHODS = {"BCa": "BCa", "percentile": "percentile", "basic": "basic"}

# A statistic of resampled units, vectorised: an index array [rows, n] (each row one resample of the n
# units) -> [rows] values. Working on indices lets a unit carry anything (a pair's whole patching matrix).
IndexStatistic = Callable[[np.ndarray], np.ndarray]


def bootstrap_distribution(
    n: int, statistic: IndexStatistic, *, n_resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> np.ndarray:
    """The statistic on ``n_resamples`` resamples of ``n`` units: the same resamples ``bootstrap_estimate``
    uses with the same seed (for summaries an interval does not give, e.g. how often the top head is the same)."""
    result = _bootstrap(n, statistic, "percentile", n_resamples, seed, LEVEL)
    return np.asarray(result.bootstrap_distribution)


def bootstrap_estimate(
    n: int,
    statistic: IndexStatistic,
    *,
    units: str,
    method: str = "BCa",
    n_resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = LEVEL,
) -> Estimate:
    """The statistic on all ``n`` units, with a bootstrap interval over them (``scipy.stats.bootstrap``).

    ``statistic(indices)`` takes [rows, n] unit indices and returns [rows] values. BCa corrects the
    percentile interval for bias and skew; where its jackknife degenerates (a statistic constant under
    leave-one-out) scipy returns NaN and the percentile interval is used instead, and said so."""
    if method not in BOOTSTRAP_METHODS:
        raise ValueError(f"Unknown bootstrap method {method!r}; valid: {', '.join(BOOTSTRAP_METHODS)}.")
    if n < 2:
        raise ValueError(f"A bootstrap interval needs at least 2 {units}, got {n}.")
    value = float(statistic(np.arange(n)[None, :])[0])
    result = _bootstrap(n, statistic, method, n_resamples, seed, level)
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    used = method
    if method == "BCa" and not (np.isfinite(low) and np.isfinite(high)):
        result = _bootstrap(n, statistic, "percentile", n_resamples, seed, level)
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        used = "percentile (BCa degenerate)"
    return Estimate(value, Interval(low, high, n, units, f"{used} bootstrap over {units}, {n_resamples} resamples", level))


def _bootstrap(n: int, statistic: IndexStatistic, method: str, n_resamples: int, seed: int, level: float):
    def vectorised(indices, axis=-1):  # scipy passes resamples of np.arange(n) along ``axis``
        indices = np.moveaxis(np.asarray(indices), axis, -1)
        lead = indices.shape[:-1]
        return np.asarray(statistic(indices.reshape(-1, indices.shape[-1])), dtype=float).reshape(lead)

    with warnings.catch_warnings():  # a degenerate BCa is handled by the caller, not printed
        warnings.simplefilter("ignore", category=stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return stats.bootstrap(
            (np.arange(n),),
            vectorised,
            vectorized=True,
            n_resamples=n_resamples,
            batch=max(1, min(n_resamples, 2_000_000 // max(n, 1))),  # bounds the [resamples, n] arrays
            confidence_level=level,
            method=BOOTSTRAP_METHODS[method],
            rng=np.random.default_rng(seed),
        )


def unit_counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each of ``n`` units occurs in each resample: [rows, k] indices -> [rows, n] counts."""
    rows = idx.shape[0]
    offset = idx + n * np.arange(rows)[:, None]  # each row its own block of n bins
    return np.bincount(offset.ravel(), minlength=rows * n).reshape(rows, n).astype(float)


def resampled_means(idx: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Means of per-unit values over each resample: [rows, k] indices, [n, ...] values -> [rows, ...], as one
    matrix product (a unit's whole matrix is never copied once per draw)."""
    values = np.asarray(values, dtype=float)
    flat = values.reshape(values.shape[0], -1)
    means = unit_counts(idx, values.shape[0]) @ flat / idx.shape[1]
    return means.reshape(idx.shape[0], *values.shape[1:])


def mean_of(values: np.ndarray) -> IndexStatistic:
    """The mean of per-unit values: the commonest statistic."""
    values = np.asarray(values, dtype=float)
    return lambda idx: resampled_means(idx, values)


def binomial_estimate(k: int, n: int, *, units: str, level: float = LEVEL) -> Estimate:
    """The proportion k/n of independent trials with its exact (Clopper-Pearson) interval."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"A proportion needs 0 <= k <= n and n >= 1, got k={k}, n={n}.")
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return Estimate(k / n, Interval(float(ci.low), float(ci.high), int(n), units, "exact binomial (Clopper-Pearson)", level))


def t_estimate(values, *, units: str, level: float = LEVEL) -> Estimate:
    """The mean of independent values with its t interval (``scipy.stats.ttest_1samp``)."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"A t interval needs at least 2 {units}, got {values.size}.")
    ci = stats.ttest_1samp(values, 0.0).confidence_interval(confidence_level=level)
    return Estimate(float(values.mean()), Interval(float(ci.low), float(ci.high), len(values), units,
                                                   f"t over {units}", level))


# ---- crossed designs: a statistic of a table whose rows and columns are both samples ----
# (claim 2: edits x knowledge pieces; every edit is measured on the same pieces, so pieces are a second
# source of variation, shared by all rows. scipy has no resampling for crossed designs: the two functions
# below draw the indices themselves and hand them to the statistic, as bootstrap_estimate does.)

# A statistic of a table resampled by rows and columns: (row indices [B, n_rows], column indices
# [B, n_cols]) -> [B] values.
TableStatistic = Callable[[np.ndarray, np.ndarray], np.ndarray]


def two_way_bootstrap_estimate(
    n_rows: int,
    n_cols: int,
    statistic: TableStatistic,
    *,
    units: str,
    col_units: str,
    n_resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = LEVEL,
    batch: int = 100,
) -> Estimate:
    """The statistic on the whole table, with a percentile interval from resampling rows and columns
    independently with replacement (the "pigeonhole" bootstrap of crossed random effects: Owen 2007,
    Ann. Appl. Stat. 1:1). Its variance counts the row x column interaction twice, so it errs on the wide
    side; resampling rows alone (a cluster bootstrap) ignores that every row shares the same columns and
    is too narrow when columns carry effects of their own (``tests/test_intervals.py`` checks both).
    ``n`` is the number of rows (``units``); the method names the columns."""
    if n_rows < 2 or n_cols < 2:
        raise ValueError(f"A two-way bootstrap needs at least 2 {units} and 2 {col_units}, got {n_rows} x {n_cols}.")
    value = float(statistic(np.arange(n_rows)[None], np.arange(n_cols)[None])[0])
    rng = np.random.default_rng(seed)
    draws = []
    for lo in range(0, n_resamples, batch):
        b = min(batch, n_resamples - lo)
        draws.append(np.asarray(statistic(rng.integers(0, n_rows, (b, n_rows)), rng.integers(0, n_cols, (b, n_cols))), float))
    dist = np.concatenate(draws)
    dist = dist[np.isfinite(dist)]
    low, high = (np.quantile(dist, [(1 - level) / 2, (1 + level) / 2]) if len(dist) else (np.nan, np.nan))
    method = f"percentile two-way bootstrap over {units} x {n_cols} {col_units}, {n_resamples} resamples"
    return Estimate(value, Interval(float(low), float(high), n_rows, units, method, level))


def column_permutation_p(
    n_cols: int, statistic: Callable[[np.ndarray], np.ndarray], *, n_permutations: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED, batch: int = 100,
) -> float:
    """One-sided p-value that the statistic is this large when column labels carry no association:
    ``statistic(perms)`` ([B, n_cols] column permutations, applied to one side of the table *jointly in
    every row*; the identity gives the observed value) -> [B]. Permuting within each row instead would
    break what a column shares across rows and reject too often when columns carry effects of their own.
    (1 + #{T* >= T}) / (1 + n_permutations)."""
    observed = float(statistic(np.arange(n_cols)[None])[0])
    if not np.isfinite(observed):
        return float("nan")
    rng = np.random.default_rng(seed)
    exceed = 0
    for lo in range(0, n_permutations, batch):
        b = min(batch, n_permutations - lo)
        perms = rng.permuted(np.tile(np.arange(n_cols), (b, 1)), axis=1)
        exceed += int((np.asarray(statistic(perms)) >= observed - 1e-12).sum())
    return (1 + exceed) / (1 + n_permutations)


def row_spearman(x: np.ndarray, y: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Spearman's rho within each row of [..., rows, cols] arrays, over the entries where ``valid`` (ties,
    e.g. a resampled column, get average ranks); NaN for a row with fewer than 3 entries or a constant side."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if valid is not None:
        x, y = np.where(valid, x, np.nan), np.where(valid, y, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        rx, ry = stats.rankdata(x, axis=-1, nan_policy="omit"), stats.rankdata(y, axis=-1, nan_policy="omit")
        rx, ry = rx - np.nanmean(rx, -1, keepdims=True), ry - np.nanmean(ry, -1, keepdims=True)
        sxy, sxx, syy = np.nansum(rx * ry, -1), np.nansum(rx * rx, -1), np.nansum(ry * ry, -1)
        n = np.sum(np.isfinite(rx), -1)
        return np.where((n >= 3) & (sxx > 0) & (syy > 0), sxy / np.sqrt(sxx * syy), np.nan)


# ---- block bootstrap: the mean of an autocorrelated series (per-token losses along a text) ----


def segment_sums(series, *, block_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(sum, count) of each consecutive segment of ``block_len`` values of a 1-D series (the last may be shorter)."""
    series = np.asarray(series, dtype=float)
    if series.ndim != 1 or block_len < 1:
        raise ValueError(f"Segments need a 1-D series and block_len >= 1, got shape {series.shape}, {block_len}.")
    starts = np.arange(0, len(series), block_len)
    return np.add.reduceat(series, starts), np.diff(np.append(starts, len(series))).astype(float)


def block_bootstrap_estimate(
    series, *, block_len: int, units: str = "segments", method: str = "BCa", n_resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED, level: float = LEVEL,
) -> Estimate:
    """The mean of a series whose neighbours are correlated (per-token loss differences along a text), with a
    non-overlapping block bootstrap (Carlstein 1986): the series is cut into segments of ``block_len`` values
    and the segments are resampled whole, so correlation within a segment stays in every resample. The
    statistic is the ratio of summed segment sums to summed segment lengths (a shorter last segment counts
    by its length). Segments much longer than the correlation length make the interval honest; the unit of
    independence, and ``n``, is the segment."""
    sums, counts = segment_sums(series, block_len=block_len)
    estimate = bootstrap_estimate(len(sums), lambda idx: sums[idx].sum(axis=1) / counts[idx].sum(axis=1),
                                  units=units, method=method, n_resamples=n_resamples, seed=seed, level=level)
    i = estimate.interval
    used = i.method.split(" bootstrap over ")[0]  # "BCa", or the percentile fallback
    return Estimate(estimate.value, Interval(i.low, i.high, i.n, i.units, f"{used} block bootstrap over {units} of "
                                             f"{block_len} values, {n_resamples} resamples", i.level))


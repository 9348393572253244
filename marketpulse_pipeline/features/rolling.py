"""Rolling statistics that depend only on the values inside each window.

pandas' rolling aggregations keep running sums, so a value's last bits depend on where the series
started; MarketPulse must give the same numbers whether a day is computed alone or inside a
year-long backfill. These helpers look at each window's values afresh (numpy sliding windows),
which is both exact in that sense and vectorized.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

T = TypeVar("T")
R = TypeVar("R")
MAX_THREADS = 8


def windows(values: np.ndarray, size: int, *, include_current: bool = True) -> np.ndarray:
    """An (n, size) array whose row t holds the `size` values ending at t (or at t - 1 when
    `include_current` is False), NaN-filled where the series is too short."""
    values = np.asarray(values, dtype="float64")
    lag = 0 if include_current else 1
    padded = np.concatenate([np.full(size - 1 + lag, np.nan), values])
    return sliding_window_view(padded, size)[: len(values)]


def group_bounds(keys: np.ndarray) -> list[slice]:
    """Slices of consecutive equal keys (frames are sorted by symbol, then day)."""
    if len(keys) == 0:
        return []
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    return [slice(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def in_threads(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`function` over `items` on every core, results in order: numpy's sorts and reductions
    and the forest engines release the GIL, so symbols computed side by side in threads take
    half the time on two cores — and each result is what a serial loop gives."""
    if len(items) < 2:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(usable_cores(), MAX_THREADS)) as pool:
        return list(pool.map(function, items))


def usable_cores() -> int:
    """The cores this process may use (its affinity, which containers narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def per_group(
    keys: np.ndarray, values: np.ndarray, function: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Apply `function` (array -> array of the same length) to each group's values."""
    out = np.full(len(values), np.nan)
    groups = group_bounds(keys)
    results = in_threads(lambda g: function(np.asarray(values[g], dtype="float64")), groups)
    for bounds, result in zip(groups, results, strict=True):
        out[bounds] = result
    return out


def shift(values: np.ndarray, periods: int = 1) -> np.ndarray:
    """`values` moved `periods` places later, NaN-filled at the start."""
    out = np.full(len(values), np.nan)
    out[periods:] = values[: len(values) - periods]
    return out


def trailing(
    keys: np.ndarray,
    values: np.ndarray,
    size: int,
    reduce: Callable[[np.ndarray], np.ndarray],
    *,
    include_current: bool = False,
) -> np.ndarray:
    """`reduce` (over axis 1) of each row's window within its group: by default the `size`
    values before the row, which is the baseline a detector compares the row against."""
    return per_group(
        keys, values, lambda x: reduce(windows(x, size, include_current=include_current))
    )


def nan_median(rows: np.ndarray, axis: int = 1) -> np.ndarray:
    """np.nanmedian over each row (axis 1), to the bit, without its masked-array path (ten
    times slower on windows of a year); NaN for a row with no finite value."""
    if axis != 1:
        raise ValueError("nan_median reduces rows (axis=1)")
    ordered = np.sort(rows, axis=1)  # NaN last
    count = (~np.isnan(rows)).sum(axis=1)  # infinities count, as in np.nanmedian
    low = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[:, None], axis=1)[:, 0]
    high = np.take_along_axis(ordered, np.maximum(count // 2, 0)[:, None], axis=1)[:, 0]
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, (low + high) / 2, np.nan)


def trailing_finite(
    keys: np.ndarray,
    values: np.ndarray,
    size: int,
    reduce: Callable[..., np.ndarray],
    min_periods: int,
) -> np.ndarray:
    """`reduce` (a NaN-aware reduction over axis 1) of the finite values among each value's
    previous `size` of the same symbol; NaN where fewer than `min_periods` are finite."""

    def one_symbol(x: np.ndarray) -> np.ndarray:
        past = windows(x, size, include_current=False)
        enough = np.isfinite(past).sum(axis=1) >= min_periods
        out = np.full(len(past), np.nan)
        if enough.any():
            out[enough] = reduce(past[enough], axis=1)
        return out

    return per_group(keys, values, one_symbol)


def trailing_residual(
    keys: np.ndarray, y: np.ndarray, x: np.ndarray, size: int, min_periods: int = 20
) -> np.ndarray:
    """`y`'s residual from its least-squares line on `x` over the previous `size` sessions
    (same symbol, pairs where both are finite), in the residual's standard deviations: what
    `x` does not explain."""
    both = np.isfinite(y) & np.isfinite(x)
    y, x = np.where(both, y, np.nan), np.where(both, x, np.nan)

    def mean(values: np.ndarray) -> np.ndarray:
        return trailing_finite(keys, values, size, np.nanmean, min_periods)

    mean_y, mean_x = mean(y), mean(x)
    cov = mean(x * y) - mean_x * mean_y
    var_x = mean(x * x) - mean_x**2
    var_y = mean(y * y) - mean_y**2
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = cov / var_x
        residual_var = var_y - slope * cov
        residual = (y - mean_y) - slope * (x - mean_x)
        return residual / np.sqrt(np.where(residual_var > 0, residual_var, np.nan))


def trailing_zscore(
    keys: np.ndarray, values: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each value's z against the mean and sample standard deviation of the `size` values
    before it (NaN where that spread is zero or the history too short): z, mean, std."""
    mean = trailing(keys, values, size, lambda w: w.mean(axis=1))
    std = trailing(keys, values, size, lambda w: w.std(axis=1, ddof=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(std > 0, (values - mean) / std, np.nan)
    return z, mean, std


def ewma_volatility(
    keys: np.ndarray,
    returns: np.ndarray,
    decay: float,
    span: int,
    min_periods: int = 20,
    bound: np.ndarray | None = None,
) -> np.ndarray:
    """RiskMetrics volatility of the returns before each day (same symbol): weights
    (1 - decay) decay^k on the squared return k + 1 sessions back, over a fixed `span` so every
    day is computed afresh (decay^span is what is left out: 2e-7 for 0.94 and 250). NaN with
    fewer than `min_periods` returns, or none but zeros. With `bound` (per row), each return
    counts as at most its bound in size: one shock then does not inflate the volatility that
    judges the weeks after it (winsorized EWMA)."""
    weights = (1 - decay) * decay ** np.arange(span)
    if bound is not None:
        returns = np.where(np.isfinite(bound), np.clip(returns, -bound, bound), returns)

    def one_symbol(r: np.ndarray) -> np.ndarray:
        past = windows(r**2, span, include_current=False)[:, ::-1]  # newest first
        present = np.isfinite(past)
        # sums, not a matrix product: BLAS may round a row differently with the row count,
        # and a day must not change with the length of the run that computes it
        total = (np.where(present, past, 0.0) * weights).sum(axis=1)
        weight = (present * weights).sum(axis=1)
        enough = present.sum(axis=1) >= min_periods
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(enough & (total > 0), np.sqrt(total / weight), np.nan)

    return per_group(keys, returns, one_symbol)

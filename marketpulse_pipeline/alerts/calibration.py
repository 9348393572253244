"""How rare a statistic is for its symbol, judged against the symbol's own past only.

A day's tail probability is the share of the previous `window` sessions whose statistic was at
least as large, the day itself counted so it is never 0. Beyond the `tail`-th largest of those
sessions an exponential tail fitted to them takes over, so a statistic larger than anything in
a year still gets a probability, the smaller the further out it lies. "p = 0.002" then means the
same for a return, a volume or a range, on TSLA or on SPY: as rare as one session in 500 of
that symbol's own history. Day D is judged against sessions before D only (point in time), and
each day looks at its window afresh, so a day computed alone equals the same day in a backfill.
"""

from __future__ import annotations

import warnings

import numpy as np

from marketpulse_pipeline.features.rolling import group_bounds, windows

CALIBRATION_SESSIONS = 1260
TAIL_SESSIONS = 50
MIN_HISTORY = 60


def tail_probability(
    keys: np.ndarray,
    statistic: np.ndarray,
    window: int = CALIBRATION_SESSIONS,
    tail: int = TAIL_SESSIONS,
    min_history: int = MIN_HISTORY,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Per row (sorted by symbol, then day; larger = more unusual), the probability of a
    statistic at least as large given the symbol's previous `window` statistics. NaN where the
    statistic is, where fewer than `min_history` earlier ones are finite, and outside `rows`
    (a mask of the rows wanted; default all)."""
    out = np.full(len(statistic), np.nan)
    values = np.asarray(statistic, dtype="float64")
    wanted = np.ones(len(values), dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    for group in group_bounds(np.asarray(keys)):
        mine = wanted[group]
        if mine.any():
            found = _one_symbol(values[group], mine, window, tail, min_history)
            out[np.flatnonzero(mine) + group.start] = found
    return out


def _one_symbol(
    series: np.ndarray, wanted: np.ndarray, window: int, tail: int, min_history: int
) -> np.ndarray:
    values = series[wanted]
    past = np.sort(windows(series, window, include_current=False)[wanted], axis=1)  # NaN last
    finite = np.isfinite(past).sum(axis=1)
    at_least = (past >= values[:, None]).sum(axis=1)
    empirical = (at_least + 1) / (finite + 1)
    # the `tail` largest earlier values: their smallest is the threshold, their mean excess
    # over it the scale of an exponential tail beyond it
    k = np.minimum(tail, finite)
    rows = np.arange(len(values))
    threshold = past[rows, np.maximum(finite - k, 0)]
    ranks = np.arange(window)[None, :]
    top = (ranks >= (finite - k)[:, None]) & (ranks < finite[:, None])
    # the exponential's scale from the median excess (an exponential's median is its scale
    # times ln 2): one earlier extreme among them does not fatten the tail that judges the next
    excess = np.where(top & (past > threshold[:, None]), past - threshold[:, None], np.nan)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", over="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without excess: no tail
        median_excess = np.maximum(np.nanmedian(excess, axis=1), 1e-12)
        fitted = k / (finite + 1) * np.exp(-(values - threshold) * np.log(2) / median_excess)
    p = np.where((values > threshold) & (k > 1), np.minimum(fitted, empirical), empirical)
    return np.where(np.isfinite(values) & (finite >= max(min_history, 1)), p, np.nan)

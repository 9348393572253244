"""How rare a statistic is for its symbol, judged against the symbol's own past only: the
tail probability every detection method and every alert signal gives the days it scores.

A day's tail probability is the share of the previous `window` sessions whose statistic was at
least as large, the day itself counted so it is never 0. Beyond the `tail`-th largest of those
sessions an exponential tail fitted to them takes over, so a statistic larger than anything in
a year still gets a probability, the smaller the further out it lies. "p = 0.002" then means the
same for a return, a volume or a range, on TSLA or on SPY: as rare as one session in 500 of
that symbol's own history. Day D is judged against sessions before D only (point in time), and
each day looks at its window afresh, so a day computed alone equals the same day in a backfill.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from marketpulse_pipeline.features.rolling import group_bounds, in_threads, windows

CALIBRATION_SESSIONS = 1260
METHOD_CALIBRATION_SESSIONS = 252
METHOD_TAIL_SESSIONS = 20
"""A detection method's days are judged against its previous year's scores."""
TAIL_SESSIONS = 100
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
    values = np.where(np.isfinite(values), values, np.nan)  # an infinity is no statistic
    wanted = np.ones(len(values), dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    groups = [group for group in group_bounds(np.asarray(keys)) if wanted[group].any()]
    found = in_threads(
        lambda g: _one_symbol(values[g], wanted[g], window, tail, min_history), groups
    )
    for group, probabilities in zip(groups, found, strict=True):
        out[np.flatnonzero(wanted[group]) + group.start] = probabilities
    return out


def _one_symbol(
    series: np.ndarray, wanted: np.ndarray, window: int, tail: int, min_history: int
) -> np.ndarray:
    """`probability_among` for the wanted rows of one symbol's series, without sorting every
    window: an exact rolling rank (a skiplist, O(log window) a row) counts the earlier values
    at least as large, and only the rows inside their window's `tail` largest — a few in a
    hundred — read their window to fit the exponential tail."""
    earlier = pd.Series(series)
    rank = earlier.rolling(window + 1, min_periods=1).rank(method="max", ascending=False)
    finite = earlier.shift(1).rolling(window, min_periods=0).count().to_numpy()[wanted]
    at_least = rank.to_numpy()[wanted] - 1  # the value itself ranked among them
    values = series[wanted]
    p = (at_least + 1) / (finite + 1)
    in_tail = (at_least < np.minimum(tail, finite)) & (finite > 1)
    if in_tail.any():
        # row i has i earlier values: a window wider than that only adds NaN padding, so the
        # rows near the start (all in the tail of their short past) read narrow windows
        rows = np.flatnonzero(wanted)[in_tail]
        width = min(window, 128)
        done = np.zeros(len(rows), dtype=bool)
        while not done.all():
            some = ~done & ((rows <= width) | (width == window))
            past = windows(series, width, include_current=False)[rows[some]]
            p[np.flatnonzero(in_tail)[some]] = probability_among(
                values[in_tail][some], past, tail, min_history=0
            )
            done |= some
            width = min(window, width * 4)
    return np.where(np.isfinite(values) & (finite >= max(min_history, 1)), p, np.nan)


def probability_among(
    values: np.ndarray, past: np.ndarray, tail: int = TAIL_SESSIONS, min_history: int = MIN_HISTORY
) -> np.ndarray:
    """Per value, its tail probability among its row of `past` (n, window; NaN = absent)."""
    window = past.shape[1]
    past = np.sort(past, axis=1)  # NaN last
    finite = np.isfinite(past).sum(axis=1)
    at_least = (past >= values[:, None]).sum(axis=1)
    empirical = (at_least + 1) / (finite + 1)
    # the `tail` largest earlier values (sorted: the last `k` finite ones): the smallest is the
    # threshold, and the median of the others' excess over it sets an exponential tail beyond
    # it (an exponential's median is its scale times ln 2) — a median, so one earlier extreme
    # among them does not fatten the tail that judges the next
    k = np.minimum(tail, finite)
    first = np.maximum(finite - k, 0)
    threshold = np.take_along_axis(past, first[:, None], axis=1)[:, 0]
    above = np.maximum(k - 1, 1)  # the values above the threshold, at first + 1 ...
    middle = np.stack([first + 1 + (above - 1) // 2, first + 1 + above // 2], axis=1)
    middle = np.minimum(middle, window - 1)
    median = np.take_along_axis(past, middle, axis=1).mean(axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        median_excess = np.maximum(median - threshold, 1e-12)
        fitted = k / (finite + 1) * np.exp(-(values - threshold) * np.log(2) / median_excess)
    p = np.where((values > threshold) & (k > 1), np.minimum(fitted, empirical), empirical)
    return np.where(np.isfinite(values) & (finite >= max(min_history, 1)), p, np.nan)

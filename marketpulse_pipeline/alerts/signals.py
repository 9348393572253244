"""What the alert layer measures on each symbol-session, from prices alone (point in time).

Each signal is a statistic, larger = more unusual, judged against the sessions before the day:

- `return`: the log return's distance from the median of the previous ten years' returns, in
  their robust spread (interquartile range / 1.349) — a crash is measured against a decade, so
  the fifth -9 % day of late 2008 is still news where a one-year yardstick has grown used to
  them, and earlier crashes barely widen it;
- `volatility_adjusted`: the return over a RiskMetrics (EWMA, λ = 0.94) volatility of the
  returns before it, which reacts within days to a change of regime: a 4 % drop after a calm
  spell counts as the shock it is. Each earlier return counts as at most `WINSORIZE` robust
  spreads of its year, so one shock does not blunt the yardstick for the weeks after it;
- `range`: the day's high/low range over that volatility — the flash crash of 2010-05-06
  closed -3.2 % but spanned 9 %; a wide range in a stormy month is no news;
- `volume`: log volume above what the day's move explains (a least-squares line of log volume
  on log(1 + the `return` statistic), over the previous year — volume grows with the move,
  less than in proportion), in the residual's standard deviations: a spike the move does not
  explain is news;
- `market_relative`: the return the benchmark's does not explain (a one-year beta), in the
  residual's standard deviations — a move of the symbol, not of the market.

Baselines need at least `MIN_BASELINE` earlier sessions (NaN before) and look at each window
afresh, so a day computed alone equals the same day inside a backfill.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from marketpulse_pipeline.detectors.base import with_benchmark_returns
from marketpulse_pipeline.features.rolling import (
    ewma_volatility,
    nan_median,
    per_group,
    shift,
    trailing_finite,
    trailing_residual,
)

SIGNALS = ("return", "volatility_adjusted", "range", "volume", "market_relative")
LONG_BASELINE_SESSIONS = 2520
"""The `return` signal's yardstick: ten years of returns (rolling order statistics, exact)."""
BASELINE_SESSIONS = 252
EWMA_LAMBDA = 0.94
EWMA_SESSIONS = 250  # λ^250 ≈ 2e-7: the weights beyond it are nothing
MIN_BASELINE = 20
WINSORIZE = 4.0
HISTORY_SESSIONS = BASELINE_SESSIONS + max(BASELINE_SESSIONS, EWMA_SESSIONS) + 2
"""Sessions before a day that the other signals read: the volume signal's year-long line and the
volatility's span are over statistics that each read a year's baseline before them (and a
return, two bars)."""
RETURN_HISTORY_SESSIONS = LONG_BASELINE_SESSIONS + 2


def signal_statistics(prices: pd.DataFrame, benchmark: str | None) -> pd.DataFrame:
    """`symbol`, `timestamp`, `return_pct` and one column per signal, for `prices` (symbol,
    timestamp, open, high, low, close, volume; sorted by symbol, then day). `benchmark` is the
    symbol `market_relative` measures against (NaN when it is not in `prices`)."""
    keys = prices["symbol"].to_numpy()
    close = prices["close"].to_numpy(dtype="float64")
    returns = per_group(keys, close, lambda c: np.log(c / shift(c)))
    log_range = np.log(prices["high"].to_numpy(dtype="float64") / prices["low"].to_numpy("f8"))
    log_volume = np.log(np.maximum(prices["volume"].to_numpy(dtype="float64"), 1.0))

    centre, spread = _baseline(keys, returns, BASELINE_SESSIONS)
    deviation = returns - centre
    volatility = ewma_volatility(
        keys, deviation, EWMA_LAMBDA, EWMA_SESSIONS, bound=WINSORIZE * spread
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = np.abs(deviation) / spread
        statistics = {
            "return": _long_distance(keys, returns),
            "volatility_adjusted": np.abs(returns) / volatility,
            "range": log_range / volatility,
            "volume": trailing_residual(keys, log_volume, np.log1p(distance), BASELINE_SESSIONS),
            "market_relative": _market_relative(prices, returns, benchmark),
        }
    frame = prices[["symbol", "timestamp"]].copy()
    frame["return_pct"] = np.expm1(returns) * 100
    for name in SIGNALS:
        frame[name] = np.where(np.isfinite(statistics[name]), statistics[name], np.nan)
    return frame


def _long_distance(keys: np.ndarray, returns: np.ndarray) -> np.ndarray:
    """|return - median| / (IQR / 1.349) over the previous LONG_BASELINE_SESSIONS returns of the
    same symbol (at least MIN_BASELINE). pandas' rolling median and quantiles are exact order
    statistics of the window's values, so a day computed alone equals the same day in a
    backfill, in O(n log w)."""
    past = pd.Series(returns).groupby(keys, sort=False).shift(1)
    window = past.groupby(keys, sort=False).rolling(
        LONG_BASELINE_SESSIONS, min_periods=MIN_BASELINE
    )

    def aligned(values: pd.Series) -> np.ndarray:
        return values.reset_index(level=0, drop=True).sort_index().to_numpy()

    median = aligned(window.median())
    spread = (aligned(window.quantile(0.75)) - aligned(window.quantile(0.25))) / 1.349
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(returns - median) / np.where(spread > 0, spread, np.nan)


def _baseline(keys: np.ndarray, values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Median and scaled median absolute deviation (a standard deviation for normal data) of
    each value's previous `size` of the same symbol: robust, so last month's crash does not
    hide this month's by widening the spread it is measured in."""
    median = trailing_finite(keys, values, size, nan_median, MIN_BASELINE)

    def mad(past: np.ndarray, axis: int) -> np.ndarray:
        centre = nan_median(past, axis=axis)[:, None]
        return 1.4826 * nan_median(np.abs(past - centre), axis=axis)

    spread = trailing_finite(keys, values, size, mad, MIN_BASELINE)
    return median, np.where(spread > 0, spread, np.nan)


def _market_relative(
    prices: pd.DataFrame, returns: np.ndarray, benchmark: str | None
) -> np.ndarray:
    """|residual| of each return against the benchmark's on the same day (the market_relative
    method's join); NaN for the benchmark itself, or without one."""
    if benchmark is None or not (prices["symbol"] == benchmark).any():
        return np.full(len(prices), np.nan)
    symbols = dict.fromkeys(prices["symbol"].unique(), benchmark)
    closes = prices.loc[prices["symbol"] == benchmark, ["symbol", "timestamp", "close"]]
    market = with_benchmark_returns(prices[["symbol", "timestamp"]], closes, symbols)
    theirs = market["benchmark_return"].to_numpy("float64")
    keys = prices["symbol"].to_numpy()
    return np.abs(trailing_residual(keys, returns, theirs, BASELINE_SESSIONS))

"""Price features per symbol and session, computed over each symbol's whole history.

Conventions follow TA-Lib so values can be checked against it:
- RSI(14): Wilder smoothing seeded with the simple mean of the first 14 gains and losses; the
  first value is on the 15th bar. A flat series (no gains, no losses) gives 50, not TA-Lib's 0.
- Bollinger bands (20, 2, SMA): middle = SMA(20) of close, bands = middle ± 2 population
  standard deviations (ddof = 0) of the same 20 closes; first value on the 20th bar.
Warm-up rows are NaN (NULL in PostgreSQL), never zero or a guess.

RSI is a recursion over the whole history. Each row keeps Wilder's averages (`rsi_avg_gain`,
`rsi_avg_loss`), so a later run continues the recursion from the stored row before its window
instead of re-reading years of prices — with the same floating-point operations, so the values
are identical to a computation over the whole history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketpulse_pipeline.features.rolling import group_bounds, per_group, shift, trailing


@dataclass(frozen=True)
class IndicatorParams:
    sma_window: int = 20
    rsi_period: int = 14
    bollinger_window: int = 20
    bollinger_width: float = 2.0


@dataclass(frozen=True)
class WilderState:
    """Wilder's averages stored on the row of `timestamp`: where the RSI recursion resumes."""

    timestamp: pd.Timestamp
    avg_gain: float
    avg_loss: float


def compute_features(
    prices: pd.DataFrame,
    params: IndicatorParams | None = None,
    resume: Mapping[str, WilderState] | None = None,
) -> pd.DataFrame:
    """Features for every row of `prices` (symbol, timestamp, open, high, low, close, volume),
    sorted by day. A symbol in `resume` continues RSI from its stored state (its prices must
    include that row and enough closes for the moving windows); any other symbol's prices must
    start at its first stored session."""
    params = params or IndicatorParams()
    resume = resume or {}
    prices = prices.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    keys = prices["symbol"].to_numpy()
    close = prices["close"].to_numpy(dtype="float64")
    volume = prices["volume"].to_numpy(dtype="float64")
    previous_close = per_group(keys, close, shift)
    previous_volume = per_group(keys, volume, shift)
    previous_volume[previous_volume == 0] = np.nan

    middle = trailing(keys, close, params.bollinger_window, _mean, include_current=True)
    spread = trailing(keys, close, params.bollinger_window, _population_std, include_current=True)
    upper = middle + params.bollinger_width * spread
    lower = middle - params.bollinger_width * spread
    with np.errstate(divide="ignore", invalid="ignore"):
        percent_b = np.where(upper > lower, (close - lower) / (upper - lower), np.nan)
        features = pd.DataFrame(
            {
                "symbol": prices["symbol"],
                "timestamp": prices["timestamp"],
                "return_pct": (close / previous_close - 1.0) * 100.0,
                "log_return": np.log(close / previous_close),
                "volume_change_pct": (volume / previous_volume - 1.0) * 100.0,
                "range_pct": (prices["high"].to_numpy() - prices["low"].to_numpy())
                / previous_close
                * 100.0,
                "gap_pct": (prices["open"].to_numpy() / previous_close - 1.0) * 100.0,
                "sma_20": trailing(keys, close, params.sma_window, _mean, include_current=True),
                **_rsi_columns(prices, close, params.rsi_period, resume),
                "bb_middle": middle,
                "bb_upper": upper,
                "bb_lower": lower,
                "bb_percent_b": percent_b,
            }
        )
    return features


def _mean(windows: np.ndarray) -> np.ndarray:
    return windows.mean(axis=1)


def _population_std(windows: np.ndarray) -> np.ndarray:
    return windows.std(axis=1)


def _rsi_columns(
    prices: pd.DataFrame, close: np.ndarray, period: int, resume: Mapping[str, WilderState]
) -> dict[str, np.ndarray]:
    columns = {
        name: np.full(len(close), np.nan) for name in ("rsi_14", "rsi_avg_gain", "rsi_avg_loss")
    }
    stamps = prices["timestamp"].to_numpy()
    for bounds in group_bounds(prices["symbol"].to_numpy()):
        state = resume.get(prices["symbol"].iat[bounds.start])
        start = None
        if state is not None:
            start = int(np.searchsorted(stamps[bounds], np.datetime64(state.timestamp, "ns")))
            state = (start, state.avg_gain, state.avg_loss)
        rsi, gain, loss = wilder(close[bounds], period, state)
        (
            columns["rsi_14"][bounds],
            columns["rsi_avg_gain"][bounds],
            columns["rsi_avg_loss"][bounds],
        ) = (
            rsi,
            gain,
            loss,
        )
    return columns


def wilder(
    close: np.ndarray, period: int = 14, state: tuple[int, float, float] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RSI and Wilder's average gain and loss for each bar.

    Without `state` the series starts at its first bar: the averages are seeded with the simple
    mean of the first `period` changes (bar `period`, the 15th for RSI(14)). With `state`
    (position, average gain, average loss) they continue from that bar's stored values.
    """
    rsi, avg_gain, avg_loss = (np.full(len(close), np.nan) for _ in range(3))
    change = np.diff(close)
    gains, losses = np.clip(change, 0, None), np.clip(-change, 0, None)
    if state is None:
        if len(close) <= period:
            return rsi, avg_gain, avg_loss
        first, seed_gain, seed_loss = period, gains[:period].mean(), losses[:period].mean()
    else:
        first, seed_gain, seed_loss = state
    decay = (period - 1) / period
    # avg[t] = avg[t-1] * (period - 1) / period + x[t] / period: one IIR filter from the seed
    avg_gain[first] = seed_gain
    avg_loss[first] = seed_loss
    avg_gain[first + 1 :] = _smoothed(gains[first:], 1 / period, decay, seed_gain)
    avg_loss[first + 1 :] = _smoothed(losses[first:], 1 / period, decay, seed_loss)
    total = avg_gain[first:] + avg_loss[first:]
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi[first:] = np.where(total > 0, 100.0 * avg_gain[first:] / total, 50.0)
    if state is not None:  # the resumed row itself is already stored
        rsi[first], avg_gain[first], avg_loss[first] = np.nan, np.nan, np.nan
    return rsi, avg_gain, avg_loss


def _smoothed(values: np.ndarray, weight: float, decay: float, previous: float) -> np.ndarray:
    """avg[t] = weight * x[t] + decay * avg[t - 1] from `previous`: the arithmetic of
    scipy.signal.lfilter([weight], [1, -decay]), to the bit, without its second of imports
    (a daily run smooths sixty values a symbol; a loop is fast enough)."""
    out = np.empty(len(values))
    average = previous
    for i, value in enumerate(values.tolist()):
        average = weight * value + decay * average
        out[i] = average
    return out

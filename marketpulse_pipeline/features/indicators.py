"""Price features per symbol and session, computed over each symbol's whole history.

Conventions follow TA-Lib so values can be checked against it:
- RSI(14): Wilder smoothing seeded with the simple mean of the first 14 gains and losses; the
  first value is on the 15th bar. A flat series (no gains, no losses) gives 50, not TA-Lib's 0.
- Bollinger bands (20, 2, SMA): middle = SMA(20) of close, bands = middle ± 2 population
  standard deviations (ddof = 0) of the same 20 closes; first value on the 20th bar.
Warm-up rows are NaN (NULL in PostgreSQL), never zero or a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from marketpulse_pipeline.features.rolling import per_group, shift, trailing

FEATURE_COLUMNS = [
    "return_pct",
    "log_return",
    "volume_change_pct",
    "range_pct",
    "gap_pct",
    "sma_20",
    "rsi_14",
    "bb_middle",
    "bb_upper",
    "bb_lower",
    "bb_percent_b",
]


@dataclass(frozen=True)
class IndicatorParams:
    sma_window: int = 20
    rsi_period: int = 14
    bollinger_window: int = 20
    bollinger_width: float = 2.0


def compute_features(prices: pd.DataFrame, params: IndicatorParams | None = None) -> pd.DataFrame:
    """Features for every row of `prices` (symbol, timestamp, open, high, low, close, volume),
    which must hold each symbol's history from its first stored session, sorted by day."""
    params = params or IndicatorParams()
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
                "rsi_14": per_group(keys, close, lambda c: wilder_rsi(c, params.rsi_period)),
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


def wilder_rsi(close: np.ndarray, period: int = 14) -> np.ndarray:
    """RSI with Wilder's smoothing, TA-Lib style: NaN for the first `period` bars."""
    rsi = np.full(len(close), np.nan)
    if len(close) <= period:
        return rsi
    change = np.diff(close)
    gains, losses = np.clip(change, 0, None), np.clip(-change, 0, None)
    decay = (period - 1) / period
    # avg[t] = avg[t-1] * (period - 1) / period + x[t] / period, seeded with the simple mean
    seed_gain, seed_loss = gains[:period].mean(), losses[:period].mean()
    avg_gain = np.r_[
        seed_gain, lfilter([1 / period], [1, -decay], gains[period:], zi=[decay * seed_gain])[0]
    ]
    avg_loss = np.r_[
        seed_loss, lfilter([1 / period], [1, -decay], losses[period:], zi=[decay * seed_loss])[0]
    ]
    total = avg_gain + avg_loss
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi[period:] = np.where(total > 0, 100.0 * avg_gain / total, 50.0)
    return rsi

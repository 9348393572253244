"""Technical indicators: RSI entering overbought/oversold, closes outside the Bollinger bands."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketpulse_pipeline.detectors.base import (
    Detector,
    anomaly_rows,
    combine,
    param,
    sessions_before,
)
from marketpulse_pipeline.features.rolling import per_group, shift


@dataclass(frozen=True)
class TechnicalParams:
    overbought: float = param(70.0, "RSI above this is overbought.")
    oversold: float = param(30.0, "RSI below this is oversold.")
    streak_cap: int = param(20, "Longest run of sessions counted in the `streak_length` detail.")


def detect(market: pd.DataFrame, params: TechnicalParams) -> pd.DataFrame:
    return combine([_rsi_entries(market, params), _band_breaches(market)])


def _rsi_entries(market: pd.DataFrame, params: TechnicalParams) -> pd.DataFrame:
    """The day RSI enters a zone — not every day it stays there.

    `streak_length` is how many sessions in a row RSI moved toward the zone up to that day
    (capped): what is known on the day itself; how long the RSI will stay is not.
    """
    keys, rsi = market["symbol"].to_numpy(), market["rsi_14"].to_numpy(dtype="float64")
    previous = per_group(keys, rsi, shift)
    enters_over = (rsi > params.overbought) & (previous <= params.overbought)
    enters_under = (rsi < params.oversold) & (previous >= params.oversold)
    change = per_group(keys, rsi, lambda r: np.diff(r, prepend=np.nan))
    rising = per_group(keys, change > 0, lambda up: _run_length(up, params.streak_cap))
    falling = per_group(keys, change < 0, lambda down: _run_length(down, params.streak_cap))
    points = np.where(enters_over, rsi - params.overbought, params.oversold - rsi)
    return anomaly_rows(
        market,
        enters_over | enters_under,
        "technical",
        np.where(enters_over, "rsi_overbought", "rsi_oversold"),
        score=points,
        severity=1.0 + points / 10.0,
        details={
            "rsi": rsi,
            "previous_rsi": previous,
            "threshold": np.where(enters_over, params.overbought, params.oversold),
            "direction": np.where(enters_over, "up", "down"),
            "streak_length": np.where(enters_over, rising, falling),
        },
    )


def _band_breaches(market: pd.DataFrame) -> pd.DataFrame:
    """Closes outside the bands of the 20 closes before the day (the previous day's bands)."""
    keys, close = market["symbol"].to_numpy(), market["close"].to_numpy(dtype="float64")
    upper = per_group(keys, market["bb_upper"].to_numpy(dtype="float64"), shift)
    lower = per_group(keys, market["bb_lower"].to_numpy(dtype="float64"), shift)
    middle = per_group(keys, market["bb_middle"].to_numpy(dtype="float64"), shift)
    width = (upper - middle) / 2.0  # one standard deviation: the bands are middle ± 2 std
    above, below = close > upper, close < lower
    with np.errstate(divide="ignore", invalid="ignore"):
        beyond = np.where(above, close - upper, lower - close) / np.where(width > 0, width, np.nan)
    return anomaly_rows(
        market,
        (above | below) & np.isfinite(beyond),
        "technical",
        np.where(above, "bollinger_breach_upper", "bollinger_breach_lower"),
        score=beyond,
        severity=1.0 + beyond / 2.0,
        details={
            "close": close,
            "band": np.where(above, upper, lower),
            "middle": middle,
            "std": width,
            "direction": np.where(above, "up", "down"),
        },
    )


def _run_length(condition: np.ndarray, cap: int) -> np.ndarray:
    """Consecutive true values ending at each position, capped at `cap` (so a history that
    starts more than `cap` sessions earlier always gives the same answer)."""
    count = np.cumsum(condition)
    at_last_break = np.maximum.accumulate(np.where(condition, 0, count))
    return np.minimum(count - at_last_break, cap).astype("float64")


DETECTOR = Detector(
    method="technical",
    params=TechnicalParams,
    detect=detect,
    history_start=sessions_before(lambda p: p.streak_cap + 2),
    description=(
        "RSI(14) entering overbought (> 70) or oversold (< 30), reported on the day it enters;"
        " closes outside the previous day's Bollinger bands (bollinger_breach_upper/lower),"
        " score = distance beyond the band in standard deviations."
    ),
    anomaly_types=(
        "rsi_overbought",
        "rsi_oversold",
        "bollinger_breach_upper",
        "bollinger_breach_lower",
    ),
)

"""Interquartile range: a day's return outside the fences of the returns before it."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketpulse_pipeline.detectors.base import Detector, anomaly_rows, param, sessions_before
from marketpulse_pipeline.features.rolling import trailing


@dataclass(frozen=True)
class IqrParams:
    window: int = param(30, "Returns before the day whose quartiles form its baseline.")
    multiplier: float = param(1.5, "k in [Q1 - k·IQR, Q3 + k·IQR].")


def detect(market: pd.DataFrame, params: IqrParams) -> pd.DataFrame:
    keys, value = market["symbol"].to_numpy(), market["return_pct"].to_numpy(dtype="float64")
    q1 = trailing(keys, value, params.window, lambda w: np.percentile(w, 25, axis=1))
    q3 = trailing(keys, value, params.window, lambda w: np.percentile(w, 75, axis=1))
    iqr = q3 - q1
    lower, upper = q1 - params.multiplier * iqr, q3 + params.multiplier * iqr
    above, below = value > upper, value < lower
    distance = np.where(above, value - upper, lower - value)
    # A flat baseline has IQR = 0: measure the distance in percentage points instead.
    score = distance / np.where(iqr > 0, iqr, 1.0)
    return anomaly_rows(
        market,
        above | below,
        "iqr",
        np.where(above, "price_spike", "price_drop"),
        score=score,
        severity=1.0 + score / params.multiplier,
        details={
            "return_pct": value,
            "q1": q1,
            "q3": q3,
            "iqr": iqr,
            "bound": np.where(above, upper, lower),
            "direction": np.where(above, "up", "down"),
            "multiplier": params.multiplier,
            "window": params.window,
        },
    )


DETECTOR = Detector(
    method="iqr",
    params=IqrParams,
    detect=detect,
    history_start=sessions_before(lambda p: p.window + 1),
    description=(
        "Daily return vs the quartiles of the previous `window` returns; flags returns outside"
        " [Q1 - k·IQR, Q3 + k·IQR], score = distance past the bound ÷ IQR."
    ),
    anomaly_types=("price_spike", "price_drop"),
)

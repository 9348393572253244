"""Z-score: a day's return against the mean and spread of the returns before it."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketpulse_pipeline.detectors.base import Detector, anomaly_rows, param, sessions_before
from marketpulse_pipeline.features.rolling import trailing_zscore


@dataclass(frozen=True)
class ZScoreParams:
    window: int = param(30, "Returns before the day that form its baseline.")
    threshold: float = param(2.5, "Flag when |z| exceeds this.")


def detect(market: pd.DataFrame, params: ZScoreParams) -> pd.DataFrame:
    keys, value = market["symbol"].to_numpy(), market["return_pct"].to_numpy(dtype="float64")
    z, mean, std = trailing_zscore(keys, value, params.window)
    return anomaly_rows(
        market,
        np.abs(z) > params.threshold,
        "zscore",
        np.where(z > 0, "price_spike", "price_drop"),
        score=np.abs(z),
        severity=np.abs(z) / params.threshold,
        details={
            "return_pct": value,
            "baseline_mean": mean,
            "baseline_std": std,
            "z": z,
            "threshold": params.threshold,
            "direction": np.where(z > 0, "up", "down"),
            "window": params.window,
        },
    )


DETECTOR = Detector(
    method="zscore",
    params=ZScoreParams,
    detect=detect,
    history_start=sessions_before(lambda p: p.window + 1),
    description=(
        "Daily return vs the mean and standard deviation of the previous `window` returns;"
        " flags |z| > `threshold` as price_spike or price_drop, score = |z|."
    ),
    anomaly_types=("price_spike", "price_drop"),
)

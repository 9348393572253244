"""Volume: a day's log volume against the log volumes before it."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketpulse_pipeline.detectors.base import Detector, anomaly_rows, param, sessions_before
from marketpulse_pipeline.features.rolling import trailing_zscore


@dataclass(frozen=True)
class VolumeParams:
    window: int = param(20, "Sessions before the day that form the volume baseline.")
    threshold: float = param(3.0, "Flag when |z| of log volume exceeds this.")


def detect(market: pd.DataFrame, params: VolumeParams) -> pd.DataFrame:
    keys, volume = market["symbol"].to_numpy(), market["volume"].to_numpy(dtype="float64")
    with np.errstate(divide="ignore"):
        log_volume = np.where(volume > 0, np.log(volume), np.nan)
    z, mean, std = trailing_zscore(keys, log_volume, params.window)
    return anomaly_rows(
        market,
        np.abs(z) > params.threshold,
        "volume",
        np.where(z > 0, "volume_spike", "volume_drop"),
        score=np.abs(z),
        severity=np.abs(z) / params.threshold,
        details={
            "volume": volume,
            "baseline_volume": np.exp(mean),
            "baseline_log_std": std,
            "z": z,
            "threshold": params.threshold,
            "direction": np.where(z > 0, "up", "down"),
            "window": params.window,
        },
    )


DETECTOR = Detector(
    method="volume",
    params=VolumeParams,
    detect=detect,
    history_start=sessions_before(lambda p: p.window),
    description=(
        "Log volume vs the mean and standard deviation of the previous `window` sessions;"
        " flags |z| > `threshold` as volume_spike or volume_drop, score = |z|."
    ),
    anomaly_types=("volume_spike", "volume_drop"),
)

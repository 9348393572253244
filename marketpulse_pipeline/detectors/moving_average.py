"""Moving average: a close far from the average of the closes before it."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketpulse_pipeline.detectors.base import Detector, anomaly_rows, param, sessions_before
from marketpulse_pipeline.features.rolling import trailing


@dataclass(frozen=True)
class MovingAverageParams:
    window: int = param(20, "Closes before the day that form the moving average.")
    threshold_pct: float = param(
        5.0, "Flag when the close deviates from it by more than this many percent."
    )


def detect(market: pd.DataFrame, params: MovingAverageParams) -> pd.DataFrame:
    keys, close = market["symbol"].to_numpy(), market["close"].to_numpy(dtype="float64")
    average = trailing(keys, close, params.window, lambda w: w.mean(axis=1))
    deviation = (close / average - 1.0) * 100.0
    score = np.abs(deviation) / params.threshold_pct
    return anomaly_rows(
        market,
        np.abs(deviation) > params.threshold_pct,
        "moving_average",
        np.where(deviation > 0, "trend_break_up", "trend_break_down"),
        score=score,
        severity=score,
        details={
            "close": close,
            "moving_average": average,
            "deviation_pct": deviation,
            "threshold_pct": params.threshold_pct,
            "direction": np.where(deviation > 0, "up", "down"),
            "window": params.window,
        },
    )


DETECTOR = Detector(
    method="moving_average",
    params=MovingAverageParams,
    detect=detect,
    history_start=sessions_before(lambda p: p.window),
    description=(
        "Close vs the simple moving average of the previous `window` closes; flags deviations"
        " beyond `threshold_pct` as trend_break_up or trend_break_down, score = |dev| ÷ threshold."
    ),
    anomaly_types=("trend_break_up", "trend_break_down"),
)

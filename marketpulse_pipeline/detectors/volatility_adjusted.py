"""Volatility-adjusted return: a day's return over the RiskMetrics volatility before it.

The volatility reacts within days to a change of regime, so a 4 % drop after a calm spell
counts as the shock it is, and the fifth 4 % day of a crash does not.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketpulse_pipeline.detectors.base import Detector, anomaly_rows, param, sessions_before
from marketpulse_pipeline.features.rolling import ewma_volatility

SPAN = 250  # sessions of squared returns the volatility weighs (decay^250 is negligible)


@dataclass(frozen=True)
class VolatilityAdjustedParams:
    decay: float = param(0.94, "RiskMetrics decay of the squared returns' weights.")
    threshold: float = param(4.0, "Flag when |return| exceeds this many volatilities.")


def detect(market: pd.DataFrame, params: VolatilityAdjustedParams) -> pd.DataFrame:
    keys = market["symbol"].to_numpy()
    log_return = market["log_return"].to_numpy(dtype="float64")
    volatility = ewma_volatility(keys, log_return, params.decay, SPAN)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = log_return / volatility
    return anomaly_rows(
        market,
        np.abs(z) > params.threshold,
        "volatility_adjusted",
        np.where(z > 0, "price_spike", "price_drop"),
        score=np.abs(z),
        severity=np.abs(z) / params.threshold,
        details={
            "return_pct": market["return_pct"].to_numpy(dtype="float64"),
            "volatility_pct": volatility * 100,
            "z": z,
            "threshold": params.threshold,
            "decay": params.decay,
            "direction": np.where(z > 0, "up", "down"),
        },
    )


DETECTOR = Detector(
    method="volatility_adjusted",
    params=VolatilityAdjustedParams,
    detect=detect,
    history_start=sessions_before(lambda p: SPAN + 1),
    description=(
        "Daily log return over the RiskMetrics (EWMA, `decay`) volatility of the returns"
        " before it; flags |z| > `threshold` as price_spike or price_drop, score = |z|."
    ),
    anomaly_types=("price_spike", "price_drop"),
)

"""The detection methods, pure functions over the market frame, and their registry."""

from marketpulse_pipeline.detectors import (
    iqr,
    isolation_forest,
    market_relative,
    moving_average,
    technical,
    volatility_adjusted,
    volume,
    zscore,
)
from marketpulse_pipeline.detectors.base import Detector

DETECTORS: dict[str, Detector] = {
    module.DETECTOR.method: module.DETECTOR
    for module in (
        zscore,
        iqr,
        isolation_forest,
        moving_average,
        volume,
        technical,
        volatility_adjusted,
        market_relative,
    )
}
METHODS = tuple(DETECTORS)
ANOMALY_TYPES = tuple(dict.fromkeys(t for d in DETECTORS.values() for t in d.anomaly_types))

__all__ = ["ANOMALY_TYPES", "DETECTORS", "METHODS", "Detector"]

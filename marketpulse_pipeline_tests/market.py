"""Small hand-built market frames for detector tests: the expected answer is obvious."""

import datetime as dt

import numpy as np
import pandas as pd

from marketpulse_pipeline.calendar import sessions_between
from marketpulse_pipeline.detectors import DETECTORS
from marketpulse_pipeline.detectors.base import market_for
from marketpulse_pipeline.features.indicators import compute_features


def market(closes, volumes=None, symbol: str = "TEST", start: str = "2024-01-02") -> pd.DataFrame:
    """Prices (open = previous close, a 0.5% wick each side) joined with their features."""
    closes = np.asarray(closes, dtype="float64")
    days = sessions_between(pd.Timestamp(start).date(), dt.date(2027, 6, 30))[: len(closes)]
    opens = np.r_[closes[0], closes[:-1]]
    prices = pd.DataFrame(
        {
            "symbol": symbol,
            "timestamp": days,
            "open": opens,
            "high": np.maximum(opens, closes) * 1.005,
            "low": np.minimum(opens, closes) * 0.995,
            "close": closes,
            "volume": np.full(len(closes), 1e6) if volumes is None else np.asarray(volumes, float),
        }
    )
    frame = prices.merge(compute_features(prices), on=["symbol", "timestamp"])
    return frame.assign(in_window=True)


def zigzag(n: int, step_pct: float = 0.5, start: float = 100.0) -> np.ndarray:
    """Closes that alternate +step% and -step%: calm, but with a spread."""
    returns = np.where(np.arange(1, n) % 2 == 1, step_pct, -step_pct) / 100.0
    return start * np.cumprod(np.r_[1.0, 1.0 + returns])


def detect(method: str, frame: pd.DataFrame, **params) -> pd.DataFrame:
    """`method`'s anomalies on `frame`, read as the asset reads it: a method measuring symbols
    against benchmarks gets their returns from the frame's own closes."""
    detector = DETECTORS[method]
    chosen = detector.params(**params)
    return detector.detect(market_for(detector, chosen, frame), chosen)

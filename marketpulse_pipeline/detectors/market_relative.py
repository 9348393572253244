"""Market-relative return: the part of a day's move its benchmark does not explain.

Each symbol's log return is regressed on its benchmark's (SPY by default, or a sector ETF per
symbol) over the previous year: the residual, in its standard deviations, is a move of the
symbol, not of the market. A market crash moves AAPL and SPY together and flags nothing here;
AAPL falling 8 % on a flat day does. The benchmark itself, and every symbol while its benchmark
has no prices, get no score: the method says so in its metadata and the graph goes on.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketpulse_pipeline.detectors.base import Detector, anomaly_rows, param, sessions_before
from marketpulse_pipeline.features.rolling import trailing_residual


@dataclass(frozen=True)
class MarketRelativeParams:
    benchmark: str = param("SPY", "Symbol whose return is the market's part of each move.")
    sector_benchmarks: str = param(
        "", "Per-symbol benchmarks overriding `benchmark`, e.g. 'NVDA=SMH,XOM=XLE'."
    )
    beta_sessions: int = param(252, "Sessions the trailing beta and residual spread are fitted on.")
    threshold: float = param(4.0, "Flag when |residual| exceeds this many standard deviations.")


def benchmarks(params: MarketRelativeParams, symbols: Sequence[str]) -> dict[str, str]:
    """Each symbol's benchmark."""
    overrides = dict(
        pair.strip().split("=", 1) for pair in params.sector_benchmarks.split(",") if pair.strip()
    )
    return {symbol: overrides.get(symbol, params.benchmark).strip() for symbol in symbols}


def detect(market: pd.DataFrame, params: MarketRelativeParams) -> pd.DataFrame:
    keys = market["symbol"].to_numpy()
    own = market["log_return"].to_numpy(dtype="float64")
    theirs = market["benchmark_return"].to_numpy(dtype="float64")
    z = trailing_residual(keys, own, theirs, params.beta_sessions)
    return anomaly_rows(
        market,
        np.abs(z) > params.threshold,
        "market_relative",
        np.where(z > 0, "relative_gain", "relative_drop"),
        score=np.abs(z),
        severity=np.abs(z) / params.threshold,
        details={
            "return_pct": market["return_pct"].to_numpy(dtype="float64"),
            "benchmark": market["benchmark"].to_numpy(dtype=object),
            "benchmark_return_pct": np.expm1(theirs) * 100,
            "residual_z": z,
            "threshold": params.threshold,
            "direction": np.where(z > 0, "up", "down"),
        },
    )


DETECTOR = Detector(
    method="market_relative",
    params=MarketRelativeParams,
    detect=detect,
    history_start=sessions_before(lambda p: p.beta_sessions + 1),
    description=(
        "Daily log return's residual against its benchmark's (`benchmark`, SPY by default;"
        " `sector_benchmarks` per symbol) with a trailing `beta_sessions` beta, in the residual's"
        " standard deviations; flags |z| > `threshold` as relative_gain or relative_drop."
    ),
    anomaly_types=("relative_gain", "relative_drop"),
    benchmarks=benchmarks,
)

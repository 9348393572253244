"""Computed tables are validated before writing: a bad row is a bug and stops the write."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from marketpulse_pipeline.calendar import SessionWindow
from marketpulse_pipeline.features.indicators import compute_features
from marketpulse_pipeline.prices.quality_gate import gate_bars
from marketpulse_pipeline.schemas import Anomalies, PriceFeatures, RejectedPrices, validated
from marketpulse_pipeline_tests.market import market, zigzag


def features() -> pd.DataFrame:
    return compute_features(market(zigzag(30)).iloc[:, :7])


def anomalies() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2],
            "symbol": ["AAPL", "AAPL"],
            "timestamp": pd.to_datetime(["2025-07-01", "2025-07-02"]),
            "anomaly_type": ["price_spike", "volume_drop"],
            "method": ["zscore", "volume"],
            "score": [3.1, 4.0],
            "severity": [1.2, 1.3],
            "details": ["{}", "{}"],
            "p_value": [0.004, np.nan],
        }
    ).astype({"symbol": "str", "anomaly_type": "str", "method": "str", "details": "str"})


def test_valid_frames_pass():
    validated(PriceFeatures, features())
    validated(Anomalies, anomalies())


@pytest.mark.parametrize(
    "column,value,reason",
    [
        ("rsi_14", 101.0, "rsi_14: less_than_or_equal_to(100) (got 101.0)"),
        ("bb_lower", 1000.0, "Bollinger bands out of order"),
    ],
)
def test_features_out_of_range_are_refused(column, value, reason):
    frame = features()
    frame.loc[25, column] = value
    with pytest.raises(ValueError, match=r"PriceFeatures: 1 rows fail validation") as error:
        validated(PriceFeatures, frame)
    assert reason in str(error.value)


@pytest.mark.parametrize(
    "column,value,reason",
    [
        ("score", -1.0, "score must be >= 0"),
        ("severity", np.inf, "severity: must be a finite number"),
        ("method", "astrology", "method: isin(["),
        ("anomaly_type", "vibes", "anomaly_type: isin(["),
    ],
)
def test_bad_anomalies_are_refused(column, value, reason):
    frame = anomalies()
    frame.loc[1, column] = value
    with pytest.raises(ValueError, match=r"Anomalies: 1 rows fail validation") as error:
        validated(Anomalies, frame)
    assert reason in str(error.value)


def test_the_gates_rejected_rows_fit_their_model():
    """`RejectedPrices` is what `rejected_prices` gets: the gate's refusals plus the run id."""
    raw = pd.DataFrame(
        {
            "symbol": ["AAPL", "AAPL"],
            "timestamp": pd.to_datetime(["2025-07-01", "2025-07-02"]),
            "open": [10.0, -1.0],
            "high": [11.0, 11.0],
            "low": [9.0, 9.0],
            "close": [10.5, np.nan],
            "volume": [100.0, 2.5],
            "source_ref": ["AAPL.csv:2", "AAPL.csv:3"],
        }
    ).astype({"symbol": "str", "source_ref": "str"})
    window = SessionWindow(dt.date(2025, 7, 1), dt.date(2025, 7, 2))
    rejected = gate_bars(raw, {"AAPL": window}, "csv").rejected.assign(run_id="run-1")
    row = RejectedPrices.validate(rejected).iloc[0]
    assert (row["open"], row["volume"], row["source_ref"]) == ("-1.0", "2.5", "AAPL.csv:3")
    assert pd.isna(row["close"])

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from marketpulse_pipeline.calendar import SessionWindow, missing_sessions
from marketpulse_pipeline.prices.quality_gate import gate_bars

WEEK = SessionWindow(dt.date(2025, 6, 30), dt.date(2025, 7, 7))  # July 4th and a weekend inside


def raw(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=["symbol", "timestamp", "open", "high", "low", "close", "volume"]
    ).astype({"volume": "float64"})
    frame["timestamp"] = pd.to_datetime(frame["timestamp"]).astype("datetime64[ns]")
    return frame.assign(source_ref=[f"AAPL.csv:{i + 2}" for i in range(len(frame))])


GOOD = [
    ("AAPL", "2025-06-30", 10.0, 11.0, 9.0, 10.5, 100),
    ("AAPL", "2025-07-01", 10.5, 11.0, 10.0, 10.8, 200),
    ("AAPL", "2025-07-02", 10.8, 11.2, 10.1, 11.0, 300),
    ("AAPL", "2025-07-03", 11.0, 11.5, 10.9, 11.1, 400),
    ("AAPL", "2025-07-07", 11.1, 11.4, 10.7, 11.2, 500),
]
BEFORE_THE_7TH = GOOD[:4]


def test_clean_bars_are_all_stored():
    result = gate_bars(raw(GOOD), {"AAPL": WEEK}, "csv")
    assert len(result.stored) == 5 and result.rejected.empty
    assert result.stored["volume"].tolist() == [100, 200, 300, 400, 500]
    assert (result.stored["source"] == "csv").all()


@pytest.mark.parametrize(
    "bad,reason",
    [
        (("AAPL", "2025-07-07", -1.0, 11.2, 10.1, 11.0, 300), "open must be > 0"),
        (
            ("AAPL", "2025-07-07", 10.8, 10.0, 10.1, 11.0, 300),
            "high/low inconsistent with open/close",
        ),
        (("AAPL", "2025-07-07", 10.8, 11.2, 10.1, np.nan, 300), "close is missing"),
        (("AAPL", "2025-07-07", 10.8, 11.2, 10.1, np.inf, 300), "close: must be a finite number"),
        (
            ("AAPL", "2025-07-07", 10.8, 11.2, 10.1, 11.0, 300.5),
            "volume must be a whole number below 2^63 (got 300.5)",
        ),
        (("AAPL", "2025-07-07", 10.8, 11.2, 10.1, 11.0, -3), "volume must be >= 0"),
        (("AAPL", "2025-07-04", 10.8, 11.2, 10.1, 11.0, 300), "not an NYSE session"),
        (("AAPL", "2025-07-05", 10.8, 11.2, 10.1, 11.0, 300), "not an NYSE session"),
    ],
)
def test_bad_bars_are_quarantined_with_the_reason(bad, reason):
    rows = [*BEFORE_THE_7TH, bad]
    result = gate_bars(raw(rows), {"AAPL": WEEK}, "csv")
    assert len(result.stored) + len(result.rejected) == len(rows)
    assert len(result.rejected) == 1
    rejected = result.rejected.iloc[0]
    assert reason in rejected["reason"]
    assert rejected["source_ref"] == "AAPL.csv:6"
    assert rejected["source"] == "csv"


def test_raw_values_are_kept_as_text():
    rows = [*GOOD[:4], ("AAPL", "2025-07-07", 11.1, 11.4, 10.7, np.nan, 2.5)]
    rejected = gate_bars(raw(rows), {"AAPL": WEEK}, "csv").rejected.iloc[0]
    assert rejected["open"] == "11.1" and rejected["volume"] == "2.5"
    assert rejected["close"] is None


def test_duplicates_are_all_refused_and_leave_a_gap():
    rows = [*GOOD, ("AAPL", "2025-07-07", 11.1, 11.4, 10.7, 11.3, 600)]
    result = gate_bars(raw(rows), {"AAPL": WEEK}, "csv")
    assert len(result.rejected) == 2
    assert set(result.rejected["reason"]) == {"duplicate bar for this symbol and day"}
    gaps = missing_sessions(result.stored, {"AAPL": WEEK})
    assert gaps["timestamp"].tolist() == [pd.Timestamp("2025-07-07")]


def test_sessions_without_a_valid_bar_are_gaps():
    rows = [GOOD[0], GOOD[2], ("AAPL", "2025-07-03", -1.0, 11.5, 10.9, 11.1, 400)]
    result = gate_bars(raw(rows), {"AAPL": WEEK}, "csv")
    gaps = missing_sessions(result.stored, {"AAPL": WEEK})
    assert gaps["timestamp"].dt.date.tolist() == [
        dt.date(2025, 7, 1),
        dt.date(2025, 7, 3),
        dt.date(2025, 7, 7),
    ]


def test_a_source_answering_for_other_days_is_an_error():
    rows = [*GOOD, ("AAPL", "2025-07-08", 11.1, 11.4, 10.7, 11.2, 500)]
    with pytest.raises(ValueError, match="was not asked for: AAPL"):
        gate_bars(raw(rows), {"AAPL": WEEK}, "csv")

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from marketpulse_pipeline.calendar import SessionWindow
from marketpulse_pipeline.sources.csv_files import CsvSource, PriceFileError

JULY = SessionWindow(dt.date(2025, 7, 1), dt.date(2025, 7, 31))
YAHOO = """Date,Open,High,Low,Close,Adj Close,Volume
2025-06-30,205.00,207.00,204.00,206.00,205.50,41000000
2025-07-01,206.00,210.00,205.50,207.80,207.30,48000000
2025-07-02,207.80,213.30,207.10,212.40,211.90,67000000
2025-07-03,212.10,214.60,211.80,213.50,213.00,34000000
"""
STOOQ = """Date,Open,High,Low,Close,Volume
2025-07-01,490.1,495.2,488.0,492.3,19000000
2025-07-02,492.0,493.1,487.5,491.0,17500000
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def test_yahoo_layout(tmp_path):
    write(tmp_path, "AAPL.csv", YAHOO)
    bars = CsvSource(tmp_path).bars(["AAPL"], JULY)
    assert bars["timestamp"].dt.date.tolist() == [dt.date(2025, 7, d) for d in (1, 2, 3)]
    first = bars.iloc[0]
    assert (first["open"], first["high"], first["low"], first["close"], first["volume"]) == (
        206.0,
        210.0,
        205.5,
        207.8,
        48000000.0,
    )  # Close, not Adj Close
    assert bars["source_ref"].tolist() == ["AAPL.csv:3", "AAPL.csv:4", "AAPL.csv:5"]


def test_stooq_layout_and_only_requested_files(tmp_path):
    write(tmp_path, "MSFT.csv", STOOQ)
    write(tmp_path, "AAPL.csv", "this file must not be read")
    bars = CsvSource(tmp_path).bars(["MSFT"], JULY)
    assert bars["symbol"].unique().tolist() == ["MSFT"]
    assert bars["close"].tolist() == [492.3, 491.0]


def test_missing_values_reach_the_gate_as_nan(tmp_path):
    write(tmp_path, "AAPL.csv", YAHOO.replace("212.40,211.90", "null,null"))
    bars = CsvSource(tmp_path).bars(["AAPL"], JULY)
    assert pd.isna(bars.loc[1, "close"]) and bars.loc[1, "source_ref"] == "AAPL.csv:4"


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(PriceFileError, match=r"NVDA\.csv: no price file for NVDA"):
        CsvSource(tmp_path).bars(["NVDA"], JULY)


@pytest.mark.parametrize(
    "broken,message",
    [
        (
            YAHOO.replace("212.40,211.90", "21x.40,211.90"),
            r"line 4, column Close: '21x.40' is not a number",
        ),
        (
            YAHOO.replace("2025-07-02", "2025-07-32"),
            r"line 4, column Date: '2025-07-32' is not a YYYY-MM-DD date",
        ),
        (YAHOO.replace("Adj Close", "Adjusted"), r"line 1: header .* is not Date,Open"),
        (YAHOO + "2025-07-07,1,2,0.5,1,1,100,extra\n", r"not a readable CSV file"),
        ("", r"not a readable CSV file"),
    ],
)
def test_broken_files_name_file_line_and_column(tmp_path, broken, message):
    path = write(tmp_path, "AAPL.csv", broken)
    with pytest.raises(PriceFileError, match=message) as error:
        CsvSource(tmp_path).bars(["AAPL"], JULY)
    assert str(path) in str(error.value)

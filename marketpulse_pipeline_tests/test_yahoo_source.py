"""The yahoo source against a real local HTTP server answering in the chart API's JSON."""

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from pytest_httpserver import HTTPServer

from marketpulse_pipeline.calendar import SessionWindow, sessions_between
from marketpulse_pipeline.prices.quality_gate import gate_bars
from marketpulse_pipeline.sources.http import RetryPolicy, VendorClient, VendorError
from marketpulse_pipeline.sources.yahoo import YahooSource, yahoo_ticker

WINDOW = SessionWindow(dt.date(2025, 12, 1), dt.date(2025, 12, 12))
DAYS = list(sessions_between(WINDOW.start, WINDOW.end).date)
QUICK = RetryPolicy(attempts=2, backoff=0.05, timeout=0.5, min_interval=0.0)
NEW_YORK = ZoneInfo("America/New_York")


def opening(day: dt.date) -> int:
    """A session's 9:30 open in Unix seconds: how Yahoo stamps a daily bar."""
    return int(dt.datetime.combine(day, dt.time(9, 30), NEW_YORK).timestamp())


def chart(days: list[dt.date], close: list[float | None]) -> str:
    """A chart API answer with a 4:1 split on the third day (prices already adjusted)."""
    return json.dumps(
        {
            "chart": {
                "result": [
                    {
                        "meta": {"symbol": "AAPL", "exchangeTimezoneName": "America/New_York"},
                        "timestamp": [opening(d) for d in days],
                        "events": {
                            "splits": {
                                str(opening(days[2])): {
                                    "date": opening(days[2]),
                                    "numerator": 4,
                                    "denominator": 1,
                                    "splitRatio": "4:1",
                                }
                            }
                        },
                        "indicators": {
                            "quote": [
                                {
                                    "open": close,
                                    "high": [c and c * 1.01 for c in close],
                                    "low": [c and c * 0.99 for c in close],
                                    "close": close,
                                    "volume": [1_000_000 + i for i in range(len(days))],
                                }
                            ],
                            "adjclose": [{"adjclose": close}],
                        },
                    }
                ],
                "error": None,
            }
        }
    )


def source(server: HTTPServer) -> YahooSource:
    return YahooSource(server.url_for("/"), VendorClient("yahoo", QUICK))


def test_symbols_are_spelled_as_yahoo_spells_them():
    assert yahoo_ticker("BRK.B") == "BRK-B" and yahoo_ticker("^GSPC") == "^GSPC"


def test_each_bar_is_dated_on_its_new_york_session(httpserver: HTTPServer):
    closes = [100.0 + i for i in range(len(DAYS))]
    httpserver.expect_request("/v8/finance/chart/AAPL").respond_with_data(chart(DAYS, closes))
    bars = source(httpserver).bars(["AAPL"], WINDOW)
    assert list(bars["timestamp"].dt.date) == DAYS
    assert list(bars["close"]) == closes
    assert bars["source_ref"].iloc[0] == f"yahoo:AAPL:{opening(DAYS[0])}"
    request = httpserver.log[0][0]
    assert request.args["interval"] == "1d" and request.args["events"] == "div,splits"
    assert int(request.args["period1"]) <= opening(DAYS[0]) < int(request.args["period2"])


def test_a_null_bar_reaches_the_quality_gate_with_its_text(httpserver: HTTPServer):
    closes: list[float | None] = [100.0 + i for i in range(len(DAYS))]
    closes[4] = None
    httpserver.expect_request("/v8/finance/chart/AAPL").respond_with_data(chart(DAYS, closes))
    raw = source(httpserver).bars(["AAPL"], WINDOW)
    gate = gate_bars(raw, {"AAPL": WINDOW}, "yahoo")
    assert len(gate.stored) == len(DAYS) - 1
    [refused] = gate.rejected.to_dict("records")
    assert refused["close"] == "null" and refused["timestamp"] == pd.Timestamp(DAYS[4])
    assert "close is missing" in refused["reason"]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            404,
            json.dumps(
                {
                    "chart": {
                        "result": None,
                        "error": {
                            "code": "Not Found",
                            "description": "No data found, symbol may be delisted",
                        },
                    }
                }
            ),
            "yahoo: AAPL: No data found, symbol may be delisted",
        ),
        (200, "<html><body>Will be right back</body></html>", "an HTML page"),
        (200, chart(DAYS, [1.0] * len(DAYS))[:120], "not chart JSON"),
        (500, "oops", "yahoo: AAPL: HTTP 500 from http://localhost:"),
    ],
)
def test_answers_without_bars_are_one_clear_line(httpserver: HTTPServer, status, body, expected):
    httpserver.expect_request("/v8/finance/chart/AAPL").respond_with_data(body, status=status)
    with pytest.raises(VendorError) as failure:
        source(httpserver).bars(["AAPL"], WINDOW)
    assert expected in str(failure.value) and "\n" not in str(failure.value)


def test_an_empty_range_gives_no_bars(httpserver: HTTPServer):
    empty = {"chart": {"result": [{"meta": {}, "indicators": {"quote": [{}]}}], "error": None}}
    httpserver.expect_request("/v8/finance/chart/AAPL").respond_with_data(json.dumps(empty))
    assert source(httpserver).bars(["AAPL"], WINDOW).empty

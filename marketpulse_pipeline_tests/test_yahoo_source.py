"""The yahoo source against a real local HTTP server answering in the chart API's JSON."""

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from pytest_httpserver import HTTPServer

from marketpulse_pipeline.calendar import SessionWindow, sessions_between
from marketpulse_pipeline.cli import main
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


def chart(
    days: list[dt.date],
    close: list[float | None],
    split: dict | None = None,
    dividends: dict[dt.date, object] | None = None,
) -> str:
    """A chart API answer with a 4:1 split on the third day (prices already adjusted), or
    `split` there instead, and `dividends` (cash per share) on their days."""
    split = split or {"numerator": 4, "denominator": 1, "splitRatio": "4:1"}
    paid = {
        str(opening(day)): {"amount": amount, "date": opening(day)}
        for day, amount in (dividends or {}).items()
    }
    return json.dumps(
        {
            "chart": {
                "result": [
                    {
                        "meta": {"symbol": "AAPL", "exchangeTimezoneName": "America/New_York"},
                        "timestamp": [opening(d) for d in days],
                        "events": {
                            "splits": {str(opening(days[2])): {"date": opening(days[2]), **split}},
                            "dividends": paid,
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


def test_splits_and_dividends_come_from_the_same_answer(httpserver: HTTPServer):
    closes = [100.0 + i for i in range(len(DAYS))]
    before = WINDOW.start - dt.timedelta(days=30)  # an event outside the window is not kept
    answer = chart(DAYS, closes, dividends={DAYS[5]: 0.26, before: 0.25})
    httpserver.expect_request("/v8/finance/chart/AAPL").respond_with_data(answer)
    vendor = source(httpserver)
    vendor.bars(["AAPL"], WINDOW)
    actions = vendor.corporate_actions(["AAPL"], WINDOW)
    assert len(httpserver.log) == 1  # the events came with the bars
    assert actions[["timestamp", "kind", "value"]].values.tolist() == [
        [pd.Timestamp(DAYS[2]), "split", 4.0],
        [pd.Timestamp(DAYS[5]), "dividend", 0.26],
    ]
    assert actions["source_ref"].tolist() == [
        f"yahoo:AAPL:split:{opening(DAYS[2])}",
        f"yahoo:AAPL:dividend:{opening(DAYS[5])}",
    ]


@pytest.mark.parametrize(
    ("split", "dividends", "expected"),
    [
        ({"numerator": 4, "denominator": 0}, None, "a split without a usable ratio"),
        ({"splitRatio": "4:1"}, None, "a split without a usable ratio"),
        (None, {DAYS[5]: None}, "a dividend without a usable amount"),
        (None, {DAYS[5]: -0.2}, "a dividend without a usable amount"),
    ],
)
def test_an_event_without_its_number_is_one_clear_line(
    httpserver: HTTPServer, split, dividends, expected
):
    answer = chart(DAYS, [100.0] * len(DAYS), split=split, dividends=dividends)
    httpserver.expect_request("/v8/finance/chart/AAPL").respond_with_data(answer)
    with pytest.raises(VendorError) as failure:
        source(httpserver).bars(["AAPL"], WINDOW)
    assert str(failure.value).startswith("yahoo: AAPL: " + expected)
    assert "\n" not in str(failure.value)


def test_a_yahoo_backfill_stores_bars_and_corporate_actions(
    httpserver: HTTPServer, env, conn, monkeypatch, capsys
):
    closes = [100.0 + i for i in range(len(DAYS))]
    answer = chart(DAYS, closes, dividends={DAYS[5]: 0.26})
    httpserver.expect_request("/v8/finance/chart/AAPL").respond_with_data(answer)
    monkeypatch.setenv("MARKETPULSE_SYMBOLS", "AAPL")
    monkeypatch.setenv("MARKETPULSE_SOURCE", "yahoo")
    monkeypatch.setenv("MARKETPULSE_YAHOO_URL", httpserver.url_for("/"))
    monkeypatch.delenv("DAGSTER_HOME")
    args = ["backfill", "--start", f"{WINDOW.start}", "--end", f"{WINDOW.end}"]
    assert main(args) == 0, capsys.readouterr().err
    stored = conn.execute('SELECT "timestamp", close, source FROM stock_prices ORDER BY 1')
    assert stored.fetchall() == [(d, c, "yahoo") for d, c in zip(DAYS, closes, strict=True)]
    actions = conn.execute(
        'SELECT "timestamp", kind, value, source FROM corporate_actions ORDER BY 1'
    ).fetchall()
    assert actions == [(DAYS[2], "split", 4.0, "yahoo"), (DAYS[5], "dividend", 0.26, "yahoo")]

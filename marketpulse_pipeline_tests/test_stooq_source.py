"""The stooq source against a real local HTTP server answering in Stooq's format: normal days,
throttling, server errors, timeouts, HTML pages, truncated answers and unknown symbols."""

import datetime as dt
import time

import psycopg
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from marketpulse_pipeline.calendar import SessionWindow, sessions_between
from marketpulse_pipeline.cli import main
from marketpulse_pipeline.sources.http import RetryPolicy, VendorClient, VendorError
from marketpulse_pipeline.sources.stooq import StooqSource, stooq_ticker
from marketpulse_pipeline.storage.tables import PRICE_FEATURES

FEATURE_COLUMNS = ", ".join(f'"{name}"' for name in PRICE_FEATURES.column_names)
WINDOW = SessionWindow(dt.date(2025, 12, 1), dt.date(2025, 12, 31))
QUICK = RetryPolicy(attempts=3, backoff=0.05, timeout=0.5, min_interval=0.0)


def stooq_csv(days: list[dt.date], level: float) -> str:
    """Bars in Stooq's layout: a gentle zigzag around `level`."""
    lines = ["Date,Open,High,Low,Close,Volume"]
    for i, day in enumerate(days):
        close = level * (1 + (0.01 if i % 2 else -0.01))
        lines.append(
            f"{day},{level:.2f},{level * 1.02:.2f},{level * 0.98:.2f},{close:.2f},{1000 + i}"
        )
    return "\n".join(lines) + "\n"


DAYS = list(sessions_between(WINDOW.start, WINDOW.end).date)
BODY = stooq_csv(DAYS, 100.0)


def query(ticker: str, window: SessionWindow = WINDOW) -> dict[str, str]:
    return {"s": ticker, "i": "d", "d1": f"{window.start:%Y%m%d}", "d2": f"{window.end:%Y%m%d}"}


def source(server: HTTPServer) -> StooqSource:
    return StooqSource(server.url_for("/"), VendorClient("stooq", QUICK))


def test_tickers_are_spelled_as_stooq_spells_them():
    assert stooq_ticker("AAPL") == "aapl.us"
    assert stooq_ticker("BRK.B") == "brk-b.us"
    assert stooq_ticker("^GSPC") == "^spx"


def test_a_normal_answer_gives_every_bar_with_its_line(httpserver: HTTPServer):
    httpserver.expect_request("/q/d/l/", query_string=query("aapl.us")).respond_with_data(BODY)
    bars = source(httpserver).bars(["AAPL"], WINDOW)
    assert list(bars["timestamp"].dt.date) == DAYS
    assert bars["source_ref"].iloc[0] == "stooq:aapl.us:2"
    assert bars["volume"].iloc[-1] == 1000 + len(DAYS) - 1


def test_throttling_is_waited_out_as_the_vendor_asks(httpserver: HTTPServer):
    ask = httpserver.expect_ordered_request("/q/d/l/", query_string=query("aapl.us"))
    ask.respond_with_data("slow down", status=429, headers={"Retry-After": "1"})
    httpserver.expect_ordered_request("/q/d/l/").respond_with_data(BODY)
    began = time.monotonic()
    bars = source(httpserver).bars(["AAPL"], WINDOW)
    assert len(bars) == len(DAYS) and time.monotonic() - began >= 1.0
    assert len(httpserver.log) == 2


def test_a_server_error_then_success_is_retried(httpserver: HTTPServer):
    httpserver.expect_ordered_request("/q/d/l/").respond_with_data("oops", status=500)
    httpserver.expect_ordered_request("/q/d/l/").respond_with_data(BODY)
    assert len(source(httpserver).bars(["AAPL"], WINDOW)) == len(DAYS)


def test_a_timeout_is_retried(httpserver: HTTPServer):
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return Response(BODY)

    httpserver.expect_ordered_request("/q/d/l/").respond_with_handler(slow)
    httpserver.expect_ordered_request("/q/d/l/").respond_with_data(BODY)
    assert len(source(httpserver).bars(["AAPL"], WINDOW)) == len(DAYS)


def test_a_vendor_that_keeps_failing_gives_one_line_naming_everything(httpserver: HTTPServer):
    httpserver.expect_request("/q/d/l/").respond_with_data("down", status=503)
    with pytest.raises(VendorError) as failure:
        source(httpserver).bars(["AAPL"], WINDOW)
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("stooq: AAPL: HTTP 503 from http://localhost:")
    assert "s=aapl.us" in message and message.endswith("after 3 attempts")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("No data", "stooq: AAPL: no data for aapl.us in 2025-12-01..2025-12-31"),
        ("<!DOCTYPE html><html><body>Error</body></html>", "answered with an HTML page"),
        ("Date,Open,Hi", "header"),
    ],
)
def test_answers_that_are_not_bars_are_refused_clearly(httpserver: HTTPServer, body, expected):
    httpserver.expect_request("/q/d/l/").respond_with_data(body)
    with pytest.raises(ValueError, match=expected):
        source(httpserver).bars(["AAPL"], WINDOW)


def test_a_truncated_answer_leaves_its_last_bar_to_the_quality_gate(httpserver: HTTPServer):
    truncated = BODY.rstrip("\n").rsplit(",", 2)[0]  # the last line loses close and volume
    httpserver.expect_request("/q/d/l/").respond_with_data(truncated)
    bars = source(httpserver).bars(["AAPL"], WINDOW)
    assert len(bars) == len(DAYS) and bars[["close", "volume"]].iloc[-1].isna().all()


@pytest.mark.slow
def test_a_stooq_backfill_fills_the_tables_as_the_csv_source_would(
    httpserver: HTTPServer, make_defs, new_database, monkeypatch, tmp_path, capsys
):
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    for symbol, level in (("AAPL", 170.0), ("MSFT", 370.0)):
        body = stooq_csv(DAYS, level)
        (csv_dir / f"{symbol}.csv").write_text(body)
        ticker = stooq_ticker(symbol)
        httpserver.expect_request("/q/d/l/", query_string=query(ticker)).respond_with_data(body)
    monkeypatch.setenv("MARKETPULSE_SYMBOLS", "AAPL,MSFT")
    monkeypatch.delenv("DAGSTER_HOME")
    tables = {}
    for source_name, extra in (
        ("stooq", {"MARKETPULSE_STOOQ_URL": httpserver.url_for("/")}),
        ("csv", {"MARKETPULSE_CSV_DIR": str(csv_dir)}),
    ):
        url = new_database()
        monkeypatch.setenv("MARKETPULSE_DATABASE_URL", url)
        monkeypatch.setenv("MARKETPULSE_SOURCE", source_name)
        for name, value in extra.items():
            monkeypatch.setenv(name, value)
        assert main(["backfill", "--start", f"{WINDOW.start}"]) == 0, capsys.readouterr().err
        with psycopg.connect(url, options="-c search_path=marketpulse") as conn:
            tables[source_name] = {
                "stock_prices": conn.execute(
                    'SELECT symbol, "timestamp", open, high, low, close, volume FROM stock_prices'
                    " ORDER BY 1, 2"
                ).fetchall(),
                "price_features": conn.execute(
                    f"SELECT {FEATURE_COLUMNS} FROM price_features ORDER BY 1, 2"
                ).fetchall(),
                "anomalies": conn.execute(
                    "SELECT id, score, details::text FROM anomalies ORDER BY id"
                ).fetchall(),
            }
    assert len(tables["stooq"]["stock_prices"]) == 2 * len(DAYS)
    assert tables["stooq"]["stock_prices"] == tables["csv"]["stock_prices"]
    assert tables["stooq"]["price_features"] == tables["csv"]["price_features"]
    assert tables["stooq"]["anomalies"] == tables["csv"]["anomalies"]


@pytest.mark.parametrize("url", ["stooq.com", "ftp://stooq.com", "https://"])
def test_a_vendor_url_that_is_not_http_is_named(url):
    from marketpulse_pipeline.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="MARKETPULSE_STOOQ_URL is not an http"):
        Settings.from_env(
            {"MARKETPULSE_STOOQ_URL": url, "MARKETPULSE_DATABASE_URL": "postgresql://x@h/d"}
        )


@pytest.mark.slow  # the failing symbol is retried with the real backoff: about 20 s
def test_one_failing_symbol_does_not_hold_back_the_others(
    httpserver: HTTPServer, env, conn, monkeypatch, capsys
):
    httpserver.expect_request("/q/d/l/", query_string=query("aapl.us")).respond_with_data(BODY)
    httpserver.expect_request("/q/d/l/", query_string=query("msft.us")).respond_with_data(
        "down", status=503
    )
    monkeypatch.setenv("MARKETPULSE_SYMBOLS", "AAPL,MSFT")
    monkeypatch.setenv("MARKETPULSE_SOURCE", "stooq")
    monkeypatch.setenv("MARKETPULSE_STOOQ_URL", httpserver.url_for("/"))
    monkeypatch.delenv("DAGSTER_HOME")
    assert main(["backfill", "--start", f"{WINDOW.start}"]) == 1
    err = capsys.readouterr().err
    assert "check every_symbol_loaded on stock_prices [AAPL..MSFT]: stooq: MSFT: HTTP 503" in err
    stored = conn.execute("SELECT symbol, count(*) FROM stock_prices GROUP BY 1").fetchall()
    assert stored == [("AAPL", len(DAYS))]
    assert main(["health"]) == 1
    assert "MSFT: no prices stored; last run failed: stock_prices: stooq: MSFT: HTTP 503" in (
        capsys.readouterr().err
    )


def serve_history(server: HTTPServer, ticker: str, bars: dict[dt.date, tuple]) -> None:
    """Stooq answering for `ticker` from `bars` (day → open, high, low, close, volume), cut to
    the asked range as Stooq does."""

    def answer(request: Request) -> Response:
        if request.args["s"] != ticker:
            return Response("No data")
        first = dt.datetime.strptime(request.args["d1"], "%Y%m%d").date()
        last = dt.datetime.strptime(request.args["d2"], "%Y%m%d").date()
        lines = ["Date,Open,High,Low,Close,Volume"]
        lines += [
            f"{day},{o:.4f},{h:.4f},{lo:.4f},{c:.4f},{v}"
            for day, (o, h, lo, c, v) in sorted(bars.items())
            if first <= day <= last
        ]
        return Response("\n".join(lines) + "\n")

    server.expect_request("/q/d/l/").respond_with_handler(answer)


def history(days: list[dt.date], split_on: dt.date | None = None) -> dict[dt.date, tuple]:
    """Bars of a gently rising stock; with `split_on`, a 4:1 split that day, every earlier bar
    adjusted as a vendor restates them (prices / 4, volume x 4)."""
    bars = {}
    for i, day in enumerate(days):
        close = 400.0 + i + (2.0 if i % 3 else -1.5)
        factor = 4.0 if split_on and day < split_on else 1.0
        bars[day] = (
            (close - 1) / factor,
            (close + 2) / factor,
            (close - 3) / factor,
            close / factor,
            int(1_000_000 * factor),
        )
    return bars


@pytest.mark.slow
def test_a_restated_history_is_noticed_reloaded_and_recomputed(
    httpserver: HTTPServer, env, new_database, monkeypatch, capsys
):
    days = list(sessions_between(dt.date(2025, 10, 1), dt.date(2025, 12, 31)).date)
    monkeypatch.setenv("MARKETPULSE_SYMBOLS", "AAPL")
    monkeypatch.setenv("MARKETPULSE_SOURCE", "stooq")
    monkeypatch.setenv("MARKETPULSE_STOOQ_URL", httpserver.url_for("/"))
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.setenv("MARKETPULSE_NOW", f"{days[-2]}T23:00:00Z")
    serve_history(httpserver, "aapl.us", history(days[:-1]))
    assert main(["backfill", "--start", f"{days[0]}"]) == 0, capsys.readouterr().err

    # The next evening: a 4:1 split on the new session; the vendor restates every earlier bar.
    httpserver.clear()
    restated = history(days, split_on=days[-1])
    serve_history(httpserver, "aapl.us", restated)
    monkeypatch.setenv("MARKETPULSE_NOW", f"{days[-1]}T23:00:00Z")
    assert main(["update"]) == 0, capsys.readouterr().err
    assert "AAPL: stooq restated its history from" in capsys.readouterr().out

    url = env["MARKETPULSE_DATABASE_URL"]
    with psycopg.connect(url, options="-c search_path=marketpulse") as conn:
        [(first, factor, rows)] = conn.execute(
            "SELECT first_changed, factor, rows_replaced FROM restatements"
        ).fetchall()
        got = {table: conn.execute(query).fetchall() for table, query in RESTATED_TABLES.items()}
    assert first == days[0] and factor == pytest.approx(4.0) and rows == len(days)
    assert got["stock_prices"][0][1] == pytest.approx(restated[days[0]][3])

    scratch = new_database()  # the restated history from scratch: the same rows
    monkeypatch.setenv("MARKETPULSE_DATABASE_URL", scratch)
    assert main(["backfill", "--start", f"{days[0]}"]) == 0
    with psycopg.connect(scratch, options="-c search_path=marketpulse") as conn:
        expected = {t: conn.execute(q).fetchall() for t, q in RESTATED_TABLES.items()}
    assert got == expected


RESTATED_TABLES = {
    "stock_prices": 'SELECT "timestamp", close, volume FROM stock_prices ORDER BY 1',
    "price_features": f"SELECT {FEATURE_COLUMNS} FROM price_features ORDER BY 1, 2",
    "anomalies": "SELECT id, score, details::text FROM anomalies ORDER BY id",
    "anomaly_consensus": 'SELECT "timestamp", votes, severity FROM anomaly_consensus ORDER BY 1',
}

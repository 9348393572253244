"""Regressions, each driving the real CLI in-process against the real PostgreSQL.

Every test runs the watchlist AAPL,MSFT on an ephemeral Dagster instance, with the pinned clock
of `conftest.env` (2025-12-31T23:00Z: the latest completed session is 2025-12-31).
"""

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg
import pytest

from marketpulse_pipeline.calendar import session_offset, sessions_between
from marketpulse_pipeline.cli import main
from marketpulse_pipeline.storage.database import connect

SYMBOLS = ("AAPL", "MSFT")
LATEST = dt.date(2025, 12, 31)  # the latest completed session of the pinned clock
# Each table as rows in key order, without the columns that say when a row was written.
TABLES = {
    "stock_prices": 'SELECT symbol, "timestamp", open, high, low, close, volume, source'
    " FROM stock_prices ORDER BY 1, 2",
    "price_features": 'SELECT * FROM price_features ORDER BY symbol, "timestamp"',
    "anomalies": 'SELECT id, symbol, "timestamp", anomaly_type, method, score, severity, p_value,'
    " details::text FROM anomalies ORDER BY id",
    "anomaly_consensus": 'SELECT * FROM anomaly_consensus ORDER BY symbol, "timestamp"',
    "watermarks": "SELECT target, symbol, valid_through FROM watermarks ORDER BY 1, 2",
}
# Tables the pipeline writes (market_sessions and the migrations' bookkeeping are reference data).
WRITTEN = (
    "stock_prices",
    "injected_anomalies",
    "rejected_prices",
    "price_features",
    "anomalies",
    "anomaly_consensus",
    "watermarks",
    "asset_status",
    "detection_quality",
)


@pytest.fixture
def cli(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., int]:
    """`marketpulse ...` in this process: two symbols, an ephemeral Dagster instance."""
    monkeypatch.setenv("MARKETPULSE_SYMBOLS", ",".join(SYMBOLS))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)

    def run(*args: str) -> int:
        return main(list(args))

    return run


def snapshot(url: str) -> dict[str, list[tuple]]:
    with connect(url) as conn:
        tables = {}
        for table, query in TABLES.items():
            with conn.cursor() as cur:
                cur.execute(query)
                names = [c.name for c in cur.description]
                keep = [i for i, n in enumerate(names) if n not in ("created_at", "updated_at")]
                tables[table] = [tuple(row[i] for i in keep) for row in cur.fetchall()]
    return tables


def row_counts(conn: psycopg.Connection) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in WRITTEN}


def stored_days(conn: psycopg.Connection, symbol: str) -> list[dt.date]:
    rows = conn.execute(
        'SELECT "timestamp" FROM stock_prices WHERE symbol = %s ORDER BY 1', [symbol]
    ).fetchall()
    return [day for (day,) in rows]


def sessions(start: dt.date, end: dt.date) -> list[dt.date]:
    return list(sessions_between(start, end).date)


def err_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.slow
def test_a_backfill_over_a_demo_equals_the_same_backfill_from_scratch(
    cli, env, new_database, monkeypatch
):
    """RSI resumed from stale Wilder state: features after the backfill's end must be those of
    a run from scratch over the same stored prices."""
    demo_first = session_offset(LATEST, -59)
    first = session_offset(demo_first, -20)  # before the demo's first day
    middle = session_offset(demo_first, 30)  # inside the demo window
    assert cli("demo", "--days", "60") == 0
    assert cli("backfill", "--start", f"{first}", "--end", f"{middle}") == 0
    got = snapshot(env["MARKETPULSE_DATABASE_URL"])

    reference = new_database()
    monkeypatch.setenv("MARKETPULSE_DATABASE_URL", reference)
    assert cli("backfill", "--start", f"{first}") == 0
    expected = snapshot(reference)

    assert {d for (_, d, *_) in got["stock_prices"]} == set(sessions(first, LATEST))
    for table in TABLES:
        assert got[table] == expected[table], f"{table} differs from the from-scratch run"


def test_an_older_window_fills_the_gap_to_the_stored_history(cli, conn, capsys):
    assert cli("backfill", "--start", "2025-11-03") == 0
    capsys.readouterr()
    assert cli("backfill", "--start", "2025-06-02", "--end", "2025-06-30") == 0
    out = capsys.readouterr().out
    for symbol in SYMBOLS:
        assert (
            f"{symbol}: also loading 2025-07-01..2025-10-31 so that the stored history has no hole"
            in out
        )
    for symbol in SYMBOLS:
        assert stored_days(conn, symbol) == sessions(dt.date(2025, 6, 2), LATEST)
    assert cli("update") == 0
    assert cli("health") == 0, capsys.readouterr().err


def test_nothing_from_the_future_is_stored_and_future_rows_are_removed(cli, conn, capsys):
    before = row_counts(conn)
    assert cli("backfill", "--start", "2025-12-01", "--end", "2026-03-31") == 2
    [line] = err_lines(capsys.readouterr().err)
    assert "2026-03-31" in line and f"{LATEST}" in line
    assert row_counts(conn) == before and not any(before.values())

    assert cli("backfill", "--start", "2025-12-01") == 0
    future = [dt.date(2026, 1, 2), dt.date(2026, 1, 5)]
    for day in future:  # a copy of the last stored bar, dated after the latest session
        conn.execute(
            'INSERT INTO stock_prices (symbol, "timestamp", open, high, low, close, volume, source)'
            " SELECT symbol, %s, open, high, low, close, volume, source FROM stock_prices"
            ' WHERE "timestamp" = %s',
            [day, LATEST],
        )
    capsys.readouterr()
    assert cli("health") == 1
    err = capsys.readouterr().err
    for symbol in SYMBOLS:
        assert f"{symbol}: " in err
    assert "2 rows after the latest completed session" in err

    # bars after the clock cannot be re-read to notice a split: those symbols are not loaded
    assert cli("backfill", "--start", "2025-12-01") == 1
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if "every_symbol_loaded" in line]
    assert "check every_symbol_loaded on stock_prices" in line
    assert "AAPL, MSFT: stored prices run past the latest completed session" in line
    assert "remove-future" in line and line.count("remove-future") == 1

    assert cli("db", "remove-future") == 0
    assert "stock_prices 4" in capsys.readouterr().out
    assert conn.execute(
        'SELECT count(*) FROM stock_prices WHERE "timestamp" > %s', [LATEST]
    ).fetchone() == (0,)
    rejected = conn.execute(
        'SELECT symbol, "timestamp", reason FROM rejected_prices ORDER BY 1, 2'
    ).fetchall()
    assert [(s, d) for s, d, _ in rejected] == [(s, d) for s in SYMBOLS for d in future]
    assert all(f"after {LATEST}" in reason for _, _, reason in rejected)
    assert cli("update") == 0  # loads again, and clears the failures health showed
    assert cli("health") == 0, capsys.readouterr().err


def write_stooq(directory: Path, symbol: str, days: list[dt.date], level: float) -> None:
    rng = np.random.default_rng(len(symbol))
    close = level * np.cumprod(1 + rng.normal(0, 0.01, len(days)))
    lines = ["Date,Open,High,Low,Close,Volume"]
    previous = level
    for day, price in zip(days, close, strict=True):
        high, low = max(previous, price) * 1.005, min(previous, price) * 0.995
        volume = int(rng.integers(1_000_000, 2_000_000))
        lines.append(f"{day},{previous:.2f},{high:.2f},{low:.2f},{price:.2f},{volume}")
        previous = price
    (directory / f"{symbol}.csv").write_text("\n".join(lines) + "\n")


CSV_DAYS = sessions(session_offset(LATEST, -29), LATEST)


@pytest.fixture
def csv_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The csv source, with a file of the last 30 sessions for each symbol."""
    files = tmp_path / "csv"
    files.mkdir()
    for symbol, level in zip(SYMBOLS, (170.0, 370.0), strict=True):
        write_stooq(files, symbol, CSV_DAYS, level)
    monkeypatch.setenv("MARKETPULSE_SOURCE", "csv")
    monkeypatch.setenv("MARKETPULSE_CSV_DIR", str(files))
    return files


def test_a_symbol_never_mixes_sources(cli, conn, csv_files, capsys):
    days = CSV_DAYS
    assert cli("backfill", "--start", f"{days[0]}") == 0
    query = TABLES["stock_prices"]
    stored = conn.execute(query).fetchall()
    assert len(stored) == 2 * 30 and {row[-1] for row in stored} == {"csv"}

    capsys.readouterr()
    assert cli("demo", "--days", "10") == 1
    err = capsys.readouterr().err
    assert any(
        "come from another source than 'synthetic'" in line and "AAPL (csv" in line
        for line in err.splitlines()
    ), err
    assert conn.execute(query).fetchall() == stored


def test_another_seed_is_another_source(cli, conn, capsys, monkeypatch):
    assert cli("backfill", "--start", "2025-12-01") == 0
    before = (
        stored_days(conn, "AAPL"),
        conn.execute("SELECT sum(close) FROM stock_prices").fetchone(),
    )
    monkeypatch.setenv("MARKETPULSE_SEED", "7")
    capsys.readouterr()
    assert cli("backfill", "--start", "2025-12-15", "--end", "2025-12-19") == 1
    assert "another source than 'synthetic(seed=7)'" in capsys.readouterr().err
    after = (
        stored_days(conn, "AAPL"),
        conn.execute("SELECT sum(close) FROM stock_prices").fetchone(),
    )
    assert after == before


def test_a_bad_window_or_argument_is_refused_before_anything_runs(cli, conn, capsys):
    before = row_counts(conn)
    refused = {
        ("backfill", "--start", "2025-07-10", "--end", "2025-07-01"): "2025-07-10",
        ("backfill", "--start", "2025-07-05", "--end", "2025-07-06"): "holds no NYSE session",
        ("demo", "--days", "99999999999"): "--days",
        ("backfill", "--start", "2025-07-01", "--symbols", ""): "--symbols",
    }
    for args, named in refused.items():
        assert cli(*args) == 2, args
        out = capsys.readouterr()
        [line] = err_lines(out.err)
        assert line.startswith("marketpulse") and named in line, (args, line)
        assert "database:" not in out.out  # nothing ran
    assert row_counts(conn) == before and not any(before.values())


def test_health_names_a_computed_asset_that_lags_its_prices(cli, conn, capsys):
    assert cli("backfill", "--start", "2025-11-03") == 0
    assert cli("health") == 0
    conn.execute("DELETE FROM watermarks WHERE target = 'anomaly_consensus' AND symbol = 'AAPL'")
    capsys.readouterr()
    assert cli("health") == 1
    [line] = err_lines(capsys.readouterr().err)
    assert line.startswith("AAPL: ") and "anomaly_consensus valid through nothing" in line
    assert cli("update") == 0
    capsys.readouterr()
    assert cli("health") == 0, capsys.readouterr().err


def test_a_bar_the_source_lacked_is_asked_for_again_until_it_comes(cli, conn, csv_files, capsys):
    days = CSV_DAYS
    complete = (csv_files / "AAPL.csv").read_text()
    hole = days[10]
    lines = [line for line in complete.splitlines() if not line.startswith(f"{hole},")]
    (csv_files / "AAPL.csv").write_text("\n".join(lines) + "\n")
    assert cli("backfill", "--start", f"{days[0]}") == 1
    assert f"AAPL has no bar for {hole}" in capsys.readouterr().err
    assert cli("update") == 1  # still missing: asked for again, still refused by the check

    (csv_files / "AAPL.csv").write_text(complete)  # the vendor delivers it
    assert cli("update") == 0, capsys.readouterr().err
    assert stored_days(conn, "AAPL") == days
    assert cli("health") == 0, capsys.readouterr().err


def test_a_refused_bar_is_a_warning_not_a_failure(cli, conn, csv_files, capsys):
    with (csv_files / "MSFT.csv").open("a") as extra:
        extra.write("2025-12-06,1,1,1,1,100\n")  # a Saturday
    assert cli("backfill", "--start", f"{CSV_DAYS[0]}") == 0
    out = capsys.readouterr().out
    assert "check no_rejected_rows on stock_prices [AAPL..MSFT]: 1 bars refused" in out
    assert "MSFT.csv:32: not an NYSE session" in out and "(warning)" in out


@pytest.mark.parametrize(
    ("variables", "args", "named"),
    [
        ({"MARKETPULSE_NOW": "9999-12-31"}, ("health",), "MARKETPULSE_NOW"),
        ({"MARKETPULSE_NOW": "1985-01-02"}, ("update",), "MARKETPULSE_NOW"),
        ({}, ("backfill", "--start", "0001-01-01", "--end", "0001-01-05"), "1990-01-02"),
        ({"MARKETPULSE_START_DATE": "2026-05-01"}, ("update",), "MARKETPULSE_START_DATE"),
        ({"MARKETPULSE_HOME": "/proc/marketpulse"}, ("db", "url"), "MARKETPULSE_HOME"),
    ],
)
def test_values_out_of_range_are_named_in_one_line(
    cli, capsys, monkeypatch, variables, args, named
):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    if "MARKETPULSE_HOME" in variables:
        monkeypatch.delenv("MARKETPULSE_DATABASE_URL")
    assert cli(*args) == 2
    [line] = err_lines(capsys.readouterr().err)
    assert named in line, line

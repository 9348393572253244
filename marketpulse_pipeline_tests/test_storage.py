import contextlib
import datetime as dt
import threading

import pandas as pd
import psycopg
import pytest

from marketpulse_pipeline.calendar import SessionWindow
from marketpulse_pipeline.storage.database import connect
from marketpulse_pipeline.storage.migrations import migrate, migrations, schema_version
from marketpulse_pipeline.storage.tables import (
    PRICE_FEATURES,
    STOCK_PRICES,
    read_window,
    replace_prices,
    replace_window,
    stored_spans,
    valid_through,
)

JULY = SessionWindow(dt.date(2025, 7, 1), dt.date(2025, 7, 31))
PRICE_FEATURES_EMPTY = pd.DataFrame(
    {name: pd.Series(dtype="float64") for name in PRICE_FEATURES.column_names}
).astype({"symbol": "str", "timestamp": "datetime64[ns]"})


def bars(symbol: str, days: list[str], close: float = 100.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": symbol,
            "timestamp": pd.to_datetime(days),
            "open": close,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": 1000,
            "source": "test",
        }
    )


def stored(conn) -> pd.DataFrame:
    return read_window(conn, STOCK_PRICES, {"AAPL": JULY, "MSFT": JULY})


def test_migrations_are_recorded_and_idempotent(conn):
    assert migrate(conn) == []
    assert schema_version(conn) == migrations()[-1].version
    versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations")]
    assert versions == [m.version for m in migrations()]


def test_tables_are_queryable_by_their_plain_names(conn, database_url):
    # once MarketPulse has connected, a user's own session finds the tables by their plain names
    with psycopg.connect(database_url) as plain:
        assert plain.execute("SELECT count(*) FROM stock_prices").fetchone() == (0,)


def test_replacing_a_window_twice_gives_the_same_rows(conn):
    frame = bars("AAPL", ["2025-07-01", "2025-07-02", "2025-07-03"])
    replace_window(conn, STOCK_PRICES, frame, {"AAPL": JULY})
    replace_window(conn, STOCK_PRICES, frame, {"AAPL": JULY})
    assert len(stored(conn)) == 3
    assert stored_spans(conn, STOCK_PRICES, ["AAPL", "MSFT"]) == {
        "AAPL": SessionWindow(dt.date(2025, 7, 1), dt.date(2025, 7, 3)),
        "MSFT": None,
    }


def test_replace_touches_only_the_window_and_its_symbols(conn):
    replace_window(
        conn, STOCK_PRICES, bars("AAPL", ["2025-07-01", "2025-07-02", "2025-07-03"]), {"AAPL": JULY}
    )
    replace_window(conn, STOCK_PRICES, bars("MSFT", ["2025-07-02"]), {"MSFT": JULY})
    middle = SessionWindow(dt.date(2025, 7, 2), dt.date(2025, 7, 2))
    replace_window(conn, STOCK_PRICES, bars("AAPL", ["2025-07-02"], close=200.0), {"AAPL": middle})
    rows = stored(conn).set_index(["symbol", "timestamp"])["close"]
    assert rows.to_dict() == {
        ("AAPL", pd.Timestamp("2025-07-01")): 100.0,
        ("AAPL", pd.Timestamp("2025-07-02")): 200.0,
        ("AAPL", pd.Timestamp("2025-07-03")): 100.0,
        ("MSFT", pd.Timestamp("2025-07-02")): 100.0,
    }


def test_an_empty_frame_clears_the_window(conn):
    replace_window(conn, STOCK_PRICES, bars("AAPL", ["2025-07-01", "2025-07-02"]), {"AAPL": JULY})
    replace_window(conn, STOCK_PRICES, bars("AAPL", []), {"AAPL": JULY})
    assert stored(conn).empty


def test_a_failure_mid_write_keeps_the_previous_rows(conn):
    replace_window(conn, STOCK_PRICES, bars("AAPL", ["2025-07-01", "2025-07-02"]), {"AAPL": JULY})
    # The third row breaks the OHLC constraint: PostgreSQL refuses it after the DELETE ran
    # and the first rows were copied.
    broken = bars("AAPL", ["2025-07-01", "2025-07-02", "2025-07-03"], close=300.0)
    broken.loc[2, "low"] = 500.0
    with pytest.raises(psycopg.errors.CheckViolation):
        replace_window(conn, STOCK_PRICES, broken, {"AAPL": JULY})
    assert list(stored(conn)["close"]) == [100.0, 100.0]


def test_a_killed_writer_leaves_the_previous_rows_and_their_validity(conn, database_url):
    replace_prices(conn, bars("AAPL", ["2025-07-01"]), {"AAPL": JULY})
    set_valid(conn, "AAPL", dt.date(2025, 7, 1))
    days = pd.bdate_range("1990-01-01", periods=60_000).strftime("%Y-%m-%d").tolist()
    everything = {"AAPL": SessionWindow(dt.date(1990, 1, 1), dt.date(2250, 1, 1))}
    victim = connect(database_url)
    writer = threading.Thread(
        target=_write_quietly, args=(victim, bars("AAPL", days, close=50.0), everything)
    )
    writer.start()
    while writer.is_alive():  # kill the project's writer while it streams its COPY
        copying = conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND query LIKE 'COPY%%'",
            [victim.info.backend_pid],
        ).fetchone()
        if copying:
            conn.execute("SELECT pg_terminate_backend(%s)", [victim.info.backend_pid])
            break
    writer.join()
    assert copying, "the writer finished before it could be killed"
    assert list(stored(conn)["close"]) == [100.0]
    assert valid_through(conn, PRICE_FEATURES, ["AAPL"]) == {"AAPL": dt.date(2025, 7, 1)}


def _write_quietly(conn, frame, windows) -> None:
    with contextlib.suppress(psycopg.Error):
        replace_prices(conn, frame, windows)


def set_valid(conn, symbol: str, day: dt.date) -> None:
    replace_window(conn, PRICE_FEATURES, PRICE_FEATURES_EMPTY, {symbol: JULY}, valid={symbol: day})


def test_a_change_of_prices_invalidates_computed_rows_from_its_first_changed_session(conn):
    replace_prices(conn, bars("AAPL", ["2025-07-01", "2025-07-02", "2025-07-03"]), {"AAPL": JULY})
    set_valid(conn, "AAPL", dt.date(2025, 7, 3))
    same = replace_prices(
        conn, bars("AAPL", ["2025-07-01", "2025-07-02", "2025-07-03"]), {"AAPL": JULY}
    )
    assert same == {}  # identical bars: nothing rewritten, nothing stale
    assert valid_through(conn, PRICE_FEATURES, ["AAPL"]) == {"AAPL": dt.date(2025, 7, 3)}
    restated = bars("AAPL", ["2025-07-01", "2025-07-02", "2025-07-03"])
    restated.loc[1, "close"] = 100.5
    assert replace_prices(conn, restated, {"AAPL": JULY}) == {"AAPL": dt.date(2025, 7, 2)}
    assert valid_through(conn, PRICE_FEATURES, ["AAPL"]) == {"AAPL": dt.date(2025, 7, 1)}
    assert list(stored(conn)["close"]) == [100.0, 100.5, 100.0]


def test_rows_outside_the_window_are_refused(conn):
    with pytest.raises(ValueError, match="outside the window"):
        replace_window(conn, STOCK_PRICES, bars("AAPL", ["2025-08-01"]), {"AAPL": JULY})
    assert stored(conn).empty


def test_the_binary_read_gives_exactly_the_row_by_row_frame(conn):
    """Numeric reads take one binary COPY into numpy; it must equal the row-at-a-time read to
    the bit: NULL features as NaN, dates, whole volumes, symbols in order, windows respected."""
    from marketpulse_pipeline.features.indicators import compute_features
    from marketpulse_pipeline.sources.synthetic import SyntheticSource
    from marketpulse_pipeline.storage.tables import _read_rows, read_market

    whole = SessionWindow(dt.date(2025, 1, 2), dt.date(2025, 12, 31))
    prices = SyntheticSource().bars(["MSFT", "AAPL", "TSLA"], whole).assign(source="test")
    with conn.transaction():
        replace_prices(conn, prices, dict.fromkeys(["MSFT", "AAPL", "TSLA"], whole))
        replace_window(
            conn,
            PRICE_FEATURES,
            compute_features(prices.sort_values(["symbol", "timestamp"], ignore_index=True)),
            dict.fromkeys(["MSFT", "AAPL", "TSLA"], whole),
        )
    december = SessionWindow(dt.date(2025, 12, 1), dt.date(2025, 12, 31))
    windows = {"TSLA": JULY, "AAPL": whole, "MSFT": december}
    slow = {}
    for table, names in (
        (PRICE_FEATURES, PRICE_FEATURES.column_names),
        (STOCK_PRICES, [n for n in STOCK_PRICES.column_names if n != "source"]),
    ):
        fast = read_window(conn, table, windows, columns=names)
        slow[table.name] = _read_rows(conn, table, windows, names, *_no_slice())
        pd.testing.assert_frame_equal(fast, slow[table.name], check_exact=True)
        assert fast["symbol"].drop_duplicates().tolist() == ["AAPL", "MSFT", "TSLA"]
        assert fast.isna().to_numpy().any() == (table is PRICE_FEATURES)  # RSI warm-up rows
    # what a detector reads: the prices joined with the features in one read, the same frame
    market = read_market(conn, windows, {"AAPL": december})
    joined = slow["stock_prices"].merge(slow["price_features"], on=["symbol", "timestamp"])
    pd.testing.assert_frame_equal(market.drop(columns="in_window"), joined, check_exact=True)
    in_december = (market["symbol"] == "AAPL") & (market["timestamp"] >= "2025-12-01")
    assert market["in_window"].tolist() == in_december.tolist()


def _no_slice():
    from psycopg import sql

    return sql.Composed([]), []

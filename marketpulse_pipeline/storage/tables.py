"""The only code that reads and writes the pipeline's tables.

Writes replace whole windows: in one transaction, delete the symbols' rows inside their windows
and COPY the new rows in. A failure at any point rolls back to the previous contents, and
re-running a window can never duplicate a row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from marketpulse_pipeline.calendar import SessionWindow


@dataclass(frozen=True)
class Table:
    """A pipeline table: its name and the columns a write supplies, with their PostgreSQL types."""

    name: str
    columns: tuple[tuple[str, str], ...]

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def column_types(self) -> list[str]:
        return [pg_type for _, pg_type in self.columns]


_PRICE_COLUMNS = (
    ("symbol", "text"),
    ("timestamp", "date"),
    ("open", "float8"),
    ("high", "float8"),
    ("low", "float8"),
    ("close", "float8"),
    ("volume", "int8"),
)
STOCK_PRICES = Table("stock_prices", (*_PRICE_COLUMNS, ("source", "text")))
INJECTED_ANOMALIES = Table(
    "injected_anomalies",
    (
        ("symbol", "text"),
        ("timestamp", "date"),
        ("kind", "text"),
        ("magnitude", "float8"),
        ("duration", "int4"),
    ),
)
REJECTED_PRICES = Table(
    "rejected_prices",
    (
        ("symbol", "text"),
        ("timestamp", "date"),
        *((name, "text") for name in ("open", "high", "low", "close", "volume")),
        ("source", "text"),
        ("source_ref", "text"),
        ("reason", "text"),
        ("run_id", "text"),
    ),
)


def _window_arrays(windows: Mapping[str, SessionWindow]) -> tuple[list[str], list, list]:
    live = {symbol: w for symbol, w in windows.items() if not w.is_empty}
    return list(live), [w.start for w in live.values()], [w.end for w in live.values()]


# The windows as a relation `w`, and the condition putting a row `t` inside its symbol's window.
_WINDOWS = sql.SQL("unnest(%s::text[], %s::date[], %s::date[]) AS w(symbol, first, last)")
_INSIDE = sql.SQL('t.symbol = w.symbol AND t."timestamp" BETWEEN w.first AND w.last')


def read_window(
    conn: psycopg.Connection,
    table: Table,
    windows: Mapping[str, SessionWindow],
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The rows of each symbol inside its window, ordered by symbol and day."""
    names = list(columns or table.column_names)
    query = sql.SQL(
        "SELECT {columns} FROM {table} AS t JOIN {windows} ON {inside}"
        ' ORDER BY t.symbol, t."timestamp"'
    ).format(
        columns=sql.SQL(", ").join(sql.Identifier("t", name) for name in names),
        table=sql.Identifier(table.name),
        windows=_WINDOWS,
        inside=_INSIDE,
    )
    rows = conn.execute(query, _window_arrays(windows)).fetchall()
    frame = pd.DataFrame(rows, columns=names)
    if "timestamp" in frame:
        frame["timestamp"] = pd.to_datetime(frame["timestamp"]).astype("datetime64[ns]")
    for name, pg_type in table.columns:
        if name in frame and pg_type == "float8":
            frame[name] = frame[name].astype("float64")
        elif name in frame and pg_type in ("int8", "int4"):
            frame[name] = frame[name].astype("int64")
    return frame


def last_sessions(
    conn: psycopg.Connection, table: Table, symbols: Iterable[str]
) -> dict[str, dt.date | None]:
    """The latest stored day of each symbol (None when it has no rows)."""
    query = sql.SQL(
        'SELECT s, (SELECT max("timestamp") FROM {table} WHERE symbol = s)'
        " FROM unnest(%s::text[]) AS s"
    ).format(table=sql.Identifier(table.name))
    return dict(conn.execute(query, [list(symbols)]).fetchall())


def replace_window(
    conn: psycopg.Connection,
    table: Table,
    frame: pd.DataFrame,
    windows: Mapping[str, SessionWindow],
) -> int:
    """Make `frame` the whole content of `table` inside each symbol's window, atomically.

    Returns the number of rows written. Rows outside the given windows are a programming error.
    """
    _check_inside(frame, windows)
    symbols, firsts, lasts = _window_arrays(windows)
    with conn.transaction(), conn.cursor() as cur:
        # One writer per table and symbol at a time; taken in a fixed order, so no deadlocks.
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s || ':' || s))"
            " FROM unnest(%s::text[]) AS s ORDER BY s",
            [table.name, sorted(symbols)],
        )
        delete = sql.SQL("DELETE FROM {table} AS t USING {windows} WHERE {inside}").format(
            table=sql.Identifier(table.name), windows=_WINDOWS, inside=_INSIDE
        )
        cur.execute(delete, [symbols, firsts, lasts])
        copy = sql.SQL("COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)").format(
            table=sql.Identifier(table.name),
            columns=sql.SQL(", ").join(map(sql.Identifier, table.column_names)),
        )
        with cur.copy(copy) as writer:
            writer.set_types(table.column_types)
            for row in _copy_rows(frame, table):
                writer.write_row(row)
    return len(frame)


def _check_inside(frame: pd.DataFrame, windows: Mapping[str, SessionWindow]) -> None:
    if frame.empty:
        return
    firsts = frame["symbol"].map({s: pd.Timestamp(w.start) for s, w in windows.items()})
    lasts = frame["symbol"].map({s: pd.Timestamp(w.end) for s, w in windows.items()})
    outside = ~frame["timestamp"].between(firsts, lasts)
    if outside.any():
        row = frame[outside].iloc[0]
        raise ValueError(
            f"row {row['symbol']} {row['timestamp']:%Y-%m-%d} lies outside the window"
            " being replaced"
        )


def _copy_rows(frame: pd.DataFrame, table: Table) -> Iterable[tuple]:
    """The frame's values as Python objects in the table's column order."""
    columns = []
    for name, pg_type in table.columns:
        values = frame[name]
        if pg_type == "date":
            columns.append(values.dt.date.tolist())
        elif pg_type == "text":
            columns.append([None if pd.isna(v) else str(v) for v in values.tolist()])
        elif pg_type in ("int8", "int4"):
            columns.append(values.astype(np.int64).tolist())
        else:
            columns.append(values.astype(np.float64).tolist())
    return zip(*columns, strict=True)


def table_summary(conn: psycopg.Connection, table: Table, symbols: Iterable[str]) -> pd.DataFrame:
    """Rows and first/last day per symbol."""
    query = sql.SQL(
        'SELECT s AS symbol, count(t.symbol) AS rows, min(t."timestamp") AS first,'
        ' max(t."timestamp") AS last FROM unnest(%s::text[]) AS s'
        " LEFT JOIN {table} AS t ON t.symbol = s GROUP BY s ORDER BY s"
    ).format(table=sql.Identifier(table.name))
    rows = conn.execute(query, [list(symbols)]).fetchall()
    return pd.DataFrame(rows, columns=["symbol", "rows", "first", "last"])

"""The only code that reads and writes the pipeline's tables.

Writes replace whole windows: in one transaction, delete the symbols' rows inside their windows
and COPY the new rows in. A failure at any point rolls back to the previous contents, and
re-running a window can never duplicate a row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pandera.pandas as pa
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from marketpulse_pipeline.calendar import SessionWindow, inside_windows
from marketpulse_pipeline.detectors import DETECTORS
from marketpulse_pipeline.schemas import (
    PG_TYPE,
    AlertScores,
    Anomalies,
    AnomalyConsensus,
    CorporateActions,
    DetectionQuality,
    InjectedAnomalies,
    PriceFeatures,
    RejectedPrices,
    StockPrices,
)

_PG_TYPES = {"float64": "float8", "int64": "int8", "Int64": "int8", "bool": "bool"}
"""PostgreSQL types of the pandas dtypes that say them; any other column names its own."""


@dataclass(frozen=True)
class Table:
    """A pipeline table and the Pandera model of the frames written to it: the model's columns,
    in order, are the columns a write supplies (the database fills the rest, e.g. created_at)."""

    name: str
    model: type[pa.DataFrameModel]

    @cached_property
    def columns(self) -> tuple[tuple[str, str], ...]:
        """(name, PostgreSQL type) of each column, as COPY needs them."""
        return tuple(
            (name, _pg_type(self.model, name, column))
            for name, column in self.model.to_schema().columns.items()
        )

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def column_types(self) -> list[str]:
        return [pg_type for _, pg_type in self.columns]


def _pg_type(model: type[pa.DataFrameModel], name: str, column: pa.Column) -> str:
    """The type the field declares, else the one its dtype implies; never a guess."""
    dtype = column.dtype.type
    text = "text" if isinstance(dtype, pd.StringDtype) else None
    pg_type = (column.metadata or {}).get(PG_TYPE) or text or _PG_TYPES.get(str(dtype))
    if pg_type:
        return pg_type
    raise TypeError(
        f"{model.__name__}.{name}: the dtype {dtype} does not say the PostgreSQL type;"
        f" give it with pa.Field(metadata={{{PG_TYPE!r}: ...}})"
    )


STOCK_PRICES = Table("stock_prices", StockPrices)
INJECTED_ANOMALIES = Table("injected_anomalies", InjectedAnomalies)
CORPORATE_ACTIONS = Table("corporate_actions", CorporateActions)
REJECTED_PRICES = Table("rejected_prices", RejectedPrices)
PRICE_FEATURES = Table("price_features", PriceFeatures)
ANOMALIES = Table("anomalies", Anomalies)
ANOMALY_CONSENSUS = Table("anomaly_consensus", AnomalyConsensus)
DETECTION_QUALITY = Table("detection_quality", DetectionQuality)
ALERT_SCORES = Table("alert_scores", AlertScores)


def _window_arrays(windows: Mapping[str, SessionWindow]) -> list[list]:
    live = {symbol: w for symbol, w in windows.items() if not w.is_empty}
    return [list(live), [w.start for w in live.values()], [w.end for w in live.values()]]


# The windows as a relation `w`, and the condition putting a row `t` inside its symbol's window.
_WINDOWS = sql.SQL("unnest(%s::text[], %s::date[], %s::date[]) AS w(symbol, first, last)")
_INSIDE = sql.SQL('t.symbol = w.symbol AND t."timestamp" BETWEEN w.first AND w.last')
_SET_VALID_THROUGH = sql.SQL(
    "INSERT INTO watermarks AS m (target, symbol, valid_through)"
    " SELECT %s, v.symbol, v.through FROM unnest(%s::text[], %s::date[]) AS v(symbol, through)"
    " WHERE v.through IS NOT NULL"
    " ON CONFLICT (target, symbol) DO UPDATE SET"
    " valid_through = excluded.valid_through, updated_at = now()"
)
_CLEAR_VALID_THROUGH = sql.SQL(
    "DELETE FROM watermarks WHERE target = %s"
    " AND symbol = ANY(SELECT v.symbol FROM unnest(%s::text[], %s::date[]) AS v(symbol, through)"
    " WHERE v.through IS NULL)"
)
# A change of prices from session D on makes every computed row from D on stale.
_INVALIDATE = sql.SQL(
    "UPDATE watermarks AS m SET valid_through = c.first - 1, updated_at = now()"
    " FROM unnest(%s::text[], %s::date[]) AS c(symbol, first)"
    " WHERE m.symbol = c.symbol AND m.valid_through >= c.first"
)
MARKET_LOCK = "SELECT pg_advisory_xact_lock{mode}(hashtext('marketpulse: every symbol''s prices'))"
"""Held exclusively by a price change while it invalidates the market targets, and shared by a
market target's run from its plan to its write: a run never marks rows valid that were computed
from prices another run changed meanwhile."""
_INVALIDATE_MARKET = sql.SQL(
    "UPDATE watermarks SET valid_through = %(first)s::date - 1, updated_at = now()"
    " WHERE target = ANY(%(targets)s) AND valid_through >= %(first)s"
)


def _slice(where: Mapping[str, str]) -> tuple[sql.Composable, list[str]]:
    """Extra equality conditions selecting one slice of a table (e.g. one method's anomalies)."""
    conditions = [sql.SQL(" AND {} = %s").format(sql.Identifier("t", k)) for k in where]
    return sql.Composed(conditions), list(where.values())


def _target(table: Table, where: Mapping[str, str]) -> str:
    """The watermark key: the table, or the slice of it."""
    return table.name + "".join(f"[{key}={value}]" for key, value in sorted(where.items()))


MARKET_TARGETS = [
    ALERT_SCORES.name,
    *(_target(ANOMALIES, {"method": m}) for m, d in DETECTORS.items() if d.benchmarks),
]
"""Computed tables (or slices) whose rows read other symbols' prices (a benchmark, the market's
share): a change of any symbol's prices from D makes all their rows from D stale."""


def _select(table: Table, name: str) -> sql.Composable:
    """A column as read into frames; JSON comes back as its text, as it was written."""
    column = sql.Identifier("t", name)
    if dict(table.columns).get(name) == "jsonb":
        return sql.SQL("{}::text AS {}").format(column, sql.Identifier(name))
    return column


def read_window(
    conn: psycopg.Connection,
    table: Table,
    windows: Mapping[str, SessionWindow],
    *,
    columns: Sequence[str] | None = None,
    where: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The rows of each symbol inside its window, ordered by symbol and day."""
    names = list(columns or table.column_names)
    condition, values = _slice(where or {})
    if _fixed_width(table, names):
        relation = sql.SQL("{} AS t").format(sql.Identifier(table.name))
        return _read_binary(conn, relation, dict(table.columns), windows, names, condition, values)
    return _read_rows(conn, table, windows, names, condition, values)


def _read_rows(
    conn: psycopg.Connection,
    table: Table,
    windows: Mapping[str, SessionWindow],
    names: Sequence[str],
    condition: sql.Composable,
    values: Sequence[str],
) -> pd.DataFrame:
    """`read_window` for any columns: a row at a time."""
    query = sql.SQL(
        "SELECT {columns} FROM {table} AS t JOIN {windows} ON {inside}{condition}"
        ' ORDER BY t.symbol, t."timestamp"'
    ).format(
        columns=sql.SQL(", ").join(_select(table, name) for name in names),
        table=sql.Identifier(table.name),
        windows=_WINDOWS,
        inside=_INSIDE,
        condition=condition,
    )
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(query, [*_window_arrays(windows), *values]).fetchall()
    frame = pd.DataFrame(rows, columns=names)
    types = dict(table.columns)
    for name in names:
        if types[name] == "date":
            frame[name] = pd.to_datetime(frame[name]).astype("datetime64[ns]")
        elif types[name] == "float8":
            frame[name] = frame[name].astype("float64")
        elif types[name] in ("int8", "int4"):
            frame[name] = frame[name].astype("int64")
        elif types[name] == "text":
            frame[name] = frame[name].astype("str")
    return frame


_BINARY_TYPES = {"float8": ">f8", "int8": ">i8", "int4": ">i4", "date": ">i4"}
"""Fixed-width types as binary COPY sends them (big-endian; a date is days since 2000)."""
_PG_EPOCH = np.datetime64("2000-01-01", "D")


def _fixed_width(table: Table, names: Sequence[str]) -> bool:
    """Whether every column but `symbol` has a fixed width and never NULL on the wire (a NULL
    float is read as NaN, which is what it becomes in a frame anyway)."""
    types = dict(table.columns)
    nullable = {n: c.nullable for n, c in table.model.to_schema().columns.items()}
    return names[:1] == ["symbol"] and all(
        types[n] in _BINARY_TYPES and (types[n] == "float8" or not nullable[n]) for n in names[1:]
    )


def _read_binary(
    conn: psycopg.Connection,
    relation: sql.Composable,
    types: Mapping[str, str],
    windows: Mapping[str, SessionWindow],
    names: Sequence[str],
    condition: sql.Composable,
    values: Sequence[str],
) -> pd.DataFrame:
    """`read_window` for numeric columns of `relation` (its rows `t`): one binary COPY read
    straight into numpy arrays (ten times faster than building a Python tuple per row); the
    symbol travels as its position."""
    fields = [
        sql.SQL("coalesce({}, 'NaN')").format(_column(n)) if types[n] == "float8" else _column(n)
        for n in names[1:]
    ]
    query = sql.SQL(
        "COPY (SELECT w.position::int4, {fields} FROM {relation}"
        " JOIN unnest(%s::text[], %s::date[], %s::date[]) WITH ORDINALITY"
        " AS w(symbol, first, last, position) ON {inside}{condition}"
        ' ORDER BY t.symbol, t."timestamp") TO STDOUT (FORMAT BINARY)'
    ).format(
        fields=sql.SQL(", ").join(fields),
        relation=relation,
        inside=_INSIDE,
        condition=condition,
    )
    arrays = _window_arrays(windows)
    with conn.cursor() as cur, cur.copy(query, [*arrays, *values]) as copy:
        data = b"".join(bytes(block) for block in copy)
    kinds = [">i4"] + [_BINARY_TYPES[types[n]] for n in names[1:]]
    row = np.dtype(
        [("fields", ">i2")]
        + [
            part
            for i, k in enumerate(kinds)
            for part in ((f"length_{i}", ">i4"), (f"value_{i}", k))
        ]
    )
    header = 19 + int.from_bytes(data[15:19], "big")  # signature, flags, extension length
    body = data[header:-2]  # the trailer is a field count of -1
    rows = np.frombuffer(body, dtype=row)  # raises unless whole rows arrived
    widths = [np.dtype(k).itemsize for k in kinds]
    if any((rows[f"length_{i}"] != width).any() for i, width in enumerate(widths)):
        what = relation.as_string(conn)
        raise RuntimeError(f"{what}: a fixed-width column arrived NULL or resized")
    symbols = np.asarray(arrays[0], dtype=object)
    frame = {"symbol": symbols[rows["value_0"].astype("int64") - 1]}
    for i, name in enumerate(names[1:], start=1):
        column = rows[f"value_{i}"]
        if types[name] == "date":
            frame[name] = (_PG_EPOCH + column.astype("int64")).astype("datetime64[ns]")
        else:
            frame[name] = column.astype("float64" if types[name] == "float8" else "int64")
    return pd.DataFrame(frame, columns=list(names))


def _column(name: str) -> sql.Composable:
    """A column of the relation read: the day and symbol are `t`'s, other names are unique."""
    return sql.Identifier("t", name) if name in ("symbol", "timestamp") else sql.Identifier(name)


def span_counts(
    conn: psycopg.Connection, table: Table, windows: Mapping[str, SessionWindow]
) -> dict[str, tuple[dt.date, int]]:
    """Per symbol with rows inside its window: the first day and the number of rows."""
    query = sql.SQL(
        'SELECT t.symbol, min(t."timestamp"), count(*) FROM {table} AS t JOIN {windows} ON {inside}'
        " GROUP BY t.symbol"
    ).format(table=sql.Identifier(table.name), windows=_WINDOWS, inside=_INSIDE)
    return {s: (first, rows) for s, first, rows in conn.execute(query, _window_arrays(windows))}


def latest_before(
    conn: psycopg.Connection,
    table: Table,
    starts: Mapping[str, dt.date],
    columns: Sequence[str],
    not_null: str,
) -> pd.DataFrame:
    """Each symbol's latest row before its start day whose `not_null` column is set."""
    query = sql.SQL(
        "SELECT {columns} FROM unnest(%s::text[], %s::date[]) AS w(symbol, start)"
        " JOIN LATERAL (SELECT * FROM {table} AS t WHERE t.symbol = w.symbol"
        ' AND t."timestamp" < w.start AND {not_null} IS NOT NULL'
        ' ORDER BY t."timestamp" DESC LIMIT 1) AS t ON true'
    ).format(
        columns=sql.SQL(", ").join(sql.Identifier("t", c) for c in columns),
        table=sql.Identifier(table.name),
        not_null=sql.Identifier("t", not_null),
    )
    rows = conn.execute(query, [list(starts), list(starts.values())]).fetchall()
    frame = pd.DataFrame(rows, columns=list(columns))
    if "timestamp" in frame:
        frame["timestamp"] = pd.to_datetime(frame["timestamp"]).astype("datetime64[ns]")
    return frame


def stored_spans(
    conn: psycopg.Connection, table: Table, symbols: Iterable[str]
) -> dict[str, SessionWindow | None]:
    """The first and last stored day of each symbol (None when it has no rows)."""
    query = sql.SQL(
        'SELECT s, (SELECT min("timestamp") FROM {table} WHERE symbol = s),'
        ' (SELECT max("timestamp") FROM {table} WHERE symbol = s)'
        " FROM unnest(%s::text[]) AS s"
    ).format(table=sql.Identifier(table.name))
    rows = conn.execute(query, [list(symbols)]).fetchall()
    return {s: SessionWindow(first, last) if first else None for s, first, last in rows}


_FIRST_HOLES = """
WITH spans AS (
    SELECT symbol, min("timestamp") AS first, max("timestamp") AS last, count(*) AS bars
      FROM stock_prices WHERE symbol = ANY(%s) GROUP BY symbol
), holed AS (
    SELECT * FROM spans AS s
     WHERE s.bars < (SELECT count(*) FROM market_sessions WHERE session BETWEEN s.first AND s.last)
)
SELECT h.symbol, min(m.session), count(*)
  FROM holed AS h JOIN market_sessions AS m ON m.session BETWEEN h.first AND h.last
 WHERE NOT EXISTS (
     SELECT 1 FROM stock_prices AS p WHERE p.symbol = h.symbol AND p."timestamp" = m.session
 )
 GROUP BY h.symbol
"""


@dataclass(frozen=True)
class Holes:
    """Sessions a symbol's stored history lacks between its first and last bar."""

    first: dt.date
    count: int


def stored_holes(conn: psycopg.Connection, symbols: Iterable[str]) -> dict[str, Holes]:
    """Per symbol whose stored history lacks sessions, the first and how many. Counting first
    keeps this cheap for the symbols without any."""
    rows = conn.execute(_FIRST_HOLES, [list(symbols)]).fetchall()
    return {symbol: Holes(first, count) for symbol, first, count in rows}


def stored_sources(
    conn: psycopg.Connection, symbols: Iterable[str]
) -> list[tuple[str, str, dt.date, dt.date]]:
    """(symbol, source, first day, last day) for each source a symbol's stored prices came from."""
    return conn.execute(
        'SELECT symbol, source, min("timestamp"), max("timestamp") FROM stock_prices'
        " WHERE symbol = ANY(%s) GROUP BY symbol, source ORDER BY symbol, source",
        [list(symbols)],
    ).fetchall()


def valid_through(
    conn: psycopg.Connection,
    table: Table,
    symbols: Iterable[str],
    where: Mapping[str, str] | None = None,
) -> dict[str, dt.date | None]:
    """The session through which each symbol's rows of a computed table (or slice) are valid.

    Unlike the last stored row, this knows that a sparse table — anomalies — processed the days
    on which it found nothing, and that rows after a change of prices are stale.
    """
    rows = conn.execute(
        "SELECT symbol, valid_through FROM watermarks WHERE target = %s AND symbol = ANY(%s)",
        [_target(table, where or {}), list(symbols)],
    ).fetchall()
    through = dict(rows)
    return {symbol: through.get(symbol) for symbol in symbols}


def replace_window(
    conn: psycopg.Connection,
    table: Table,
    frame: pd.DataFrame,
    windows: Mapping[str, SessionWindow],
    *,
    where: Mapping[str, str] | None = None,
    valid: Mapping[str, dt.date | None] | None = None,
) -> int:
    """Make `frame` the whole content of `table` (or of the slice `where`) inside each symbol's
    window, atomically; for a computed table, record in the same transaction the session through
    which each symbol's rows are now `valid` (None: nothing is).

    Returns the number of rows written. Rows outside the windows or the slice are refused.
    """
    where = where or {}
    _check_inside(frame, windows, where)
    arrays = _window_arrays(windows)
    condition, values = _slice(where)
    target = _target(table, where)
    with conn.transaction(), conn.cursor() as cur:
        with conn.pipeline():  # three statements, one round trip
            # One writer per target and symbol at a time; taken in a fixed order: no deadlocks.
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s || ':' || s))"
                " FROM unnest(%s::text[]) AS s ORDER BY s",
                [target, sorted(arrays[0])],
            )
            delete = sql.SQL("DELETE FROM {table} AS t USING {windows} WHERE {inside}{condition}")
            cur.execute(
                delete.format(
                    table=sql.Identifier(table.name),
                    windows=_WINDOWS,
                    inside=_INSIDE,
                    condition=condition,
                ),
                [*arrays, *values],
            )
            if valid is not None:
                through = [list(valid), list(valid.values())]
                cur.execute(_SET_VALID_THROUGH, [target, *through])
                cur.execute(_CLEAR_VALID_THROUGH, [target, *through])
        copy_frame(cur, table, frame)
    return len(frame)


def replace_prices(
    conn: psycopg.Connection,
    frame: pd.DataFrame,
    windows: Mapping[str, SessionWindow],
    stored: pd.DataFrame | None = None,
) -> dict[str, dt.date]:
    """Make `frame` the content of `stock_prices` inside each symbol's window, rewriting only
    from the first session that differs from what is stored (`stored`: the rows of `windows`
    when the caller has read them already), and mark every computed row from that session on
    stale — all in one transaction. Returns that session per changed symbol."""
    with conn.transaction():
        if stored is None:
            stored = read_window(conn, STOCK_PRICES, windows)
        changed = first_changes(stored, frame)
        if changed:
            tails = {s: SessionWindow(day, windows[s].end) for s, day in changed.items()}
            replace_window(conn, STOCK_PRICES, frame[inside_windows(frame, tails)], tails)
            conn.execute(_INVALIDATE, [list(changed), list(changed.values())])
            conn.execute(MARKET_LOCK.format(mode=""))
            first = min(changed.values())
            conn.execute(_INVALIDATE_MARKET, {"first": first, "targets": MARKET_TARGETS})
    return changed


def first_changes(stored: pd.DataFrame, arrived: pd.DataFrame) -> dict[str, dt.date]:
    """Per symbol whose bars differ, the first session where they do: a bar added, removed, or
    with any other value (prices compare exactly: float8 round-trips)."""
    both = _compared(stored, arrived, how="outer")
    first = both.loc[both["differs"]].groupby("symbol")["timestamp"].min()
    return {symbol: stamp.date() for symbol, stamp in first.items()}


def _compared(stored: pd.DataFrame, arrived: pd.DataFrame, how: str) -> pd.DataFrame:
    """Stored and arrived bars side by side (`<column>_old` for the stored), joined `how`, with
    `differs`: a bar on one side only, or any value not equal."""
    keys = ["symbol", "timestamp"]
    both = stored.merge(arrived, on=keys, how=how, suffixes=("_old", ""), indicator=True)
    differs = (both["_merge"] != "both").to_numpy(copy=True)
    for name in [name for name in STOCK_PRICES.column_names if name not in keys]:
        differs |= both[f"{name}_old"].ne(both[name]).to_numpy(dtype=bool, na_value=True)
    return both.assign(differs=differs)


def replace_all(conn: psycopg.Connection, table: Table, frame: pd.DataFrame) -> int:
    """Make `frame` the whole content of a table that is not per symbol, atomically."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(sql.SQL("DELETE FROM {table}").format(table=sql.Identifier(table.name)))
        copy_frame(cur, table, frame)
    return len(frame)


def copy_frame(
    cur: psycopg.Cursor, table: Table, frame: pd.DataFrame, into: str | None = None
) -> None:
    """Binary COPY of the frame's rows into `table` (or into the table named `into`, which has
    the same columns: how `marketpulse bench` measures the bare write floor)."""
    copy = sql.SQL("COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)").format(
        table=sql.Identifier(into or table.name),
        columns=sql.SQL(", ").join(map(sql.Identifier, table.column_names)),
    )
    with cur.copy(copy) as writer:
        writer.set_types(table.column_types)
        for row in copy_rows(frame, table):
            writer.write_row(row)


def _check_inside(
    frame: pd.DataFrame, windows: Mapping[str, SessionWindow], where: Mapping[str, str]
) -> None:
    if frame.empty:
        return
    outside = ~inside_windows(frame, windows)
    for column, value in where.items():
        outside |= frame[column] != value
    if outside.any():
        row = frame[outside].iloc[0]
        raise ValueError(
            f"row {row['symbol']} {row['timestamp']:%Y-%m-%d} lies outside the window"
            " or slice being replaced"
        )


def copy_rows(frame: pd.DataFrame, table: Table) -> Iterable[tuple]:
    """The frame's values as Python objects in the table's column order; NaN becomes NULL."""
    columns = []
    for name, pg_type in table.columns:
        values = frame[name]
        if pg_type == "date":
            columns.append(values.to_numpy(dtype="datetime64[D]").tolist())
        elif pg_type == "jsonb":
            columns.append([None if _missing(text) else Jsonb(text, dumps=str) for text in values])
        elif pg_type == "float8":
            floats = values.to_numpy(dtype="float64", na_value=np.nan)
            items = floats.tolist()
            if np.isnan(floats).any():  # NaN is not NULL in SQL
                items = [None if v != v else v for v in items]
            columns.append(items)
        elif pg_type in ("int8", "int4"):
            columns.append(values.to_numpy(dtype="int64").tolist())
        else:
            columns.append([None if _missing(v) else v for v in values.tolist()])
    return zip(*columns, strict=True)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def row_counts(
    conn: psycopg.Connection,
    table: Table,
    symbols: Iterable[str],
    where: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Rows stored per symbol (in the slice `where`, if given)."""
    summary = table_summary(conn, table, symbols, where)
    return dict(zip(summary["symbol"], summary["rows"].astype(int), strict=True))


def table_summary(
    conn: psycopg.Connection,
    table: Table,
    symbols: Iterable[str],
    where: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Rows and first/last day per symbol (in the slice `where`, if given)."""
    condition, values = _slice(where or {})
    query = sql.SQL(
        'SELECT s AS symbol, count(t.symbol) AS rows, min(t."timestamp") AS first,'
        ' max(t."timestamp") AS last FROM unnest(%s::text[]) AS s'
        " LEFT JOIN {table} AS t ON t.symbol = s{condition} GROUP BY s ORDER BY s"
    ).format(table=sql.Identifier(table.name), condition=condition)
    rows = conn.execute(query, [list(symbols), *values]).fetchall()
    return pd.DataFrame(rows, columns=["symbol", "rows", "first", "last"])


def read_market(
    conn: psycopg.Connection,
    history: Mapping[str, SessionWindow],
    windows: Mapping[str, SessionWindow],
) -> pd.DataFrame:
    """Prices joined with features over each symbol's `history`, sorted by symbol and day, with
    `in_window` marking the rows of its `windows`: what a detector reads."""
    bars = [name for name in STOCK_PRICES.column_names if name != "source"]
    names = bars + [name for name in PRICE_FEATURES.column_names if name not in bars]
    types = dict(STOCK_PRICES.columns) | dict(PRICE_FEATURES.columns)
    relation = sql.SQL('{} AS t JOIN {} AS f USING (symbol, "timestamp")').format(
        sql.Identifier(STOCK_PRICES.name), sql.Identifier(PRICE_FEATURES.name)
    )
    market = _read_binary(conn, relation, types, history, names, sql.SQL(""), [])
    return market.assign(in_window=inside_windows(market, windows))


def restated_bars(stored: pd.DataFrame, arrived: pd.DataFrame) -> pd.DataFrame:
    """Per symbol whose bars arrived again with other values, the first such session and the
    median ratio of stored to arrived close (4.0 after a 4:1 split): a restated history."""
    both = _compared(stored, arrived, how="inner")  # sessions on both sides only
    changed = both.loc[both["differs"]]
    ratio = changed["close_old"] / changed["close"]
    return (
        changed.assign(ratio=ratio)
        .groupby("symbol")
        .agg(first_changed=("timestamp", "min"), factor=("ratio", "median"))
        .reset_index()
    )


def log_restatements(
    conn: psycopg.Connection, restatements: pd.DataFrame, source: str, run_id: str
) -> None:
    """One row per restated symbol in `restatements` (symbol, first_changed, factor,
    rows_replaced)."""
    for row in restatements.itertuples(index=False):
        conn.execute(
            "INSERT INTO restatements"
            " (symbol, first_changed, factor, rows_replaced, source, run_id)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [
                row.symbol,
                row.first_changed,
                float(row.factor),
                int(row.rows_replaced),
                source,
                run_id,
            ],
        )

"""The read side users see: thin wrappers over the SQL views and functions of migration 0003,
so the CLI and `psql` give the same answers, and the feedback users write."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pandas as pd
import psycopg

from marketpulse_pipeline.calendar import MARKET_TIMEZONE

LABELS = ("false_positive", "confirmed")


class UnknownError(LookupError):
    """A symbol, method or anomaly id that the database does not know."""


def _frame(conn: psycopg.Connection, query: str, params: list | dict | None = None) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def recent_anomalies(
    conn: psycopg.Connection,
    *,
    symbol: str | None = None,
    method: str | None = None,
    anomaly_type: str | None = None,
    days: int = 7,
    limit: int = 100,
    today: dt.date | None = None,
    offset: int = 0,
) -> pd.DataFrame:
    """The SQL function's rows, from the `offset`-th on: its order is total (the id breaks
    ties), so pages of one filter cover its rows once each."""
    if symbol:
        require_symbol(conn, symbol)
    return _frame(
        conn,
        "SELECT * FROM recent_anomalies(%s, %s, %s, %s, %s, coalesce(%s, current_date))"
        ' ORDER BY "timestamp" DESC, severity DESC, id OFFSET %s',
        [symbol, method, anomaly_type, days, limit + offset, today, offset],
    )


def anomaly_by_id(conn: psycopg.Connection, anomaly_id: int) -> pd.DataFrame:
    """One anomaly with the columns (and latest label) `recent_anomalies` gives."""
    found = _frame(
        conn,
        'SELECT a.id, a.symbol, a."timestamp", a.anomaly_type, a.method, a.score, a.severity,'
        " a.details, l.label, l.note, a.created_at FROM anomalies AS a"
        " LEFT JOIN anomaly_labels AS l ON l.anomaly_id = a.id WHERE a.id = %s",
        [anomaly_id],
    )
    if found.empty:
        raise UnknownError(f"no anomaly with id {anomaly_id}")
    return found


def recent_alerts(
    conn: psycopg.Connection,
    *,
    symbol: str | None = None,
    days: int = 30,
    limit: int = 100,
    today: dt.date | None = None,
    offset: int = 0,
) -> pd.DataFrame:
    """The SQL function's rows, from the `offset`-th on (a total order: pages never overlap)."""
    if symbol:
        require_symbol(conn, symbol)
    return _frame(
        conn,
        "SELECT * FROM recent_alerts(%s, %s, %s, coalesce(%s, current_date))"
        ' ORDER BY "timestamp" DESC, p_value, symbol OFFSET %s',
        [symbol, days, limit + offset, today, offset],
    )


def anomaly_stats(
    conn: psycopg.Connection, days: int = 30, today: dt.date | None = None
) -> pd.DataFrame:
    return _frame(
        conn, "SELECT * FROM anomaly_stats(%s, coalesce(%s, current_date))", [days, today]
    )


def latest_price(conn: psycopg.Connection, symbol: str) -> pd.DataFrame:
    require_symbol(conn, symbol)
    return _frame(conn, "SELECT * FROM latest_prices WHERE symbol = %s", [symbol])


def price_history(
    conn: psycopg.Connection, symbol: str, days: int = 30, today: dt.date | None = None
) -> pd.DataFrame:
    require_symbol(conn, symbol)
    return _frame(
        conn,
        "SELECT * FROM price_history(%s, %s, coalesce(%s, current_date))",
        [symbol, days, today],
    )


def pipeline_health(
    conn: psycopg.Connection,
    symbols: list[str] | None = None,
    now: dt.datetime | None = None,
) -> pd.DataFrame:
    """Per symbol: what is stored, how far each computed asset is valid, and what is wrong."""
    return _frame(
        conn,
        "SELECT * FROM pipeline_health(%s, interval '3 hours', coalesce(%s, now()))",
        [symbols, now],
    )


def health_problems(health: pd.DataFrame) -> list[str]:
    """The verdict on `pipeline_health`'s rows: a line per symbol with a problem, none when all
    is well — `marketpulse health`'s exit code and the API's 503 both come from here."""
    wrong = health[~health["ok"].astype(bool)]
    return [
        f"{symbol}: {' '.join(str(problems).split())}"
        for symbol, problems in zip(wrong["symbol"], wrong["problems"], strict=True)
    ]


def require_symbol(conn: psycopg.Connection, symbol: str) -> None:
    found = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM stock_prices WHERE symbol = %s)", [symbol]
    ).fetchone()
    if not found or not found[0]:
        raise UnknownError(f"no prices stored for symbol {symbol!r}")


_ALERT_STALE_AFTER_LABEL = (
    "UPDATE watermarks SET valid_through = %(day)s, updated_at = now()"
    " WHERE target = 'alert_scores' AND symbol = %(symbol)s AND valid_through > %(day)s"
)


def label_anomaly(
    conn: psycopg.Connection,
    anomaly_id: int,
    label: str,
    note: str | None,
    who: str,
    at: dt.datetime | None = None,
) -> pd.DataFrame:
    """Record a user's label on an anomaly or an alert, given `at` (default: now; a pinned
    clock's moment); it must exist now (labels outlive it afterwards). A label on an alert
    tightens its symbol's budget from the next session on, so any alert scores already stored
    after the label's day are recomputed."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {', '.join(LABELS)}, not {label!r}")
    with conn.transaction():
        found = conn.execute(
            "SELECT symbol, false FROM anomalies WHERE id = %(id)s UNION ALL"
            " SELECT symbol, true FROM alert_scores WHERE id = %(id)s AND is_alert",
            {"id": anomaly_id},
        ).fetchone()
        if found is None:
            raise UnknownError(f"no anomaly or alert with id {anomaly_id}")
        symbol, on_alert = found
        recorded = _frame(
            conn,
            "INSERT INTO anomaly_feedback"
            " (anomaly_id, label, note, labelled_by, symbol, on_alert, labelled_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, coalesce(%s, now()))"
            " RETURNING anomaly_id, label, note, labelled_by, labelled_at",
            [anomaly_id, label, note, who, symbol, on_alert, at],
        )
        if on_alert:
            day = recorded["labelled_at"].iloc[0].tz_convert(MARKET_TIMEZONE).date()
            conn.execute(_ALERT_STALE_AFTER_LABEL, {"day": day, "symbol": symbol})
    return recorded


def alert_labels(conn: psycopg.Connection, symbols: Iterable[str]) -> pd.DataFrame:
    """The latest label of each labelled alert of `symbols`: symbol, labelled_on (the market's
    date of the label), label."""
    return _frame(
        conn,
        "SELECT symbol, (labelled_at AT TIME ZONE %s)::date AS labelled_on, label"
        " FROM anomaly_labels WHERE on_alert AND symbol = ANY(%s) ORDER BY labelled_at",
        [MARKET_TIMEZONE, list(symbols)],
    )


def labels_by_method(conn: psycopg.Connection) -> pd.DataFrame:
    """Each labelled anomaly's latest label and method; `method` is NULL for orphaned labels."""
    return _frame(
        conn,
        "SELECT l.anomaly_id, l.label, a.method FROM anomaly_labels AS l"
        " LEFT JOIN anomalies AS a ON a.id = l.anomaly_id",
    )


def anomalies_per_method(
    conn: psycopg.Connection, symbols: Iterable[str], start: dt.date, end: dt.date
) -> pd.DataFrame:
    """How many anomalies each method found for the symbols between two days."""
    rows = conn.execute(
        "SELECT method, count(*) FROM anomalies"
        ' WHERE symbol = ANY(%s) AND "timestamp" BETWEEN %s AND %s GROUP BY method ORDER BY method',
        [list(symbols), start, end],
    ).fetchall()
    return pd.DataFrame(rows, columns=["method", "anomalies"])


def strongest_consensus(
    conn: psycopg.Connection, symbols: Iterable[str], start: dt.date, end: dt.date, limit: int = 5
) -> pd.DataFrame:
    """The consensus anomalies with the highest combined severity."""
    rows = conn.execute(
        "SELECT symbol, \"timestamp\", votes, array_to_string(methods, ','),"
        " round(severity::numeric, 2),"
        " strongest_type FROM anomaly_consensus WHERE is_consensus AND symbol = ANY(%s)"
        ' AND "timestamp" BETWEEN %s AND %s ORDER BY severity DESC, symbol, "timestamp" LIMIT %s',
        [list(symbols), start, end, limit],
    ).fetchall()
    columns = ["symbol", "timestamp", "votes", "methods", "severity", "strongest_type"]
    return pd.DataFrame(rows, columns=columns)


CHART_SESSIONS = 120


def chart_frames(
    conn: psycopg.Connection,
    symbol: str,
    start: dt.date | None = None,
    end: dt.date | None = None,
    sessions: int = CHART_SESSIONS,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """What a symbol's chart shows, from `start` (default: `sessions` stored sessions back) to
    `end` (default: its latest price): the bars with their indicators, every method's
    anomalies, and the alerts with their latest label."""
    require_symbol(conn, symbol)
    [(first, last)] = conn.execute(
        'WITH last AS (SELECT coalesce(%(end)s, max("timestamp")) AS day FROM stock_prices'
        "  WHERE symbol = %(symbol)s)"
        ' SELECT coalesce(%(start)s, (SELECT "timestamp" FROM stock_prices, last'
        '   WHERE symbol = %(symbol)s AND "timestamp" <= last.day'
        '   ORDER BY "timestamp" DESC OFFSET %(back)s LIMIT 1),'
        '  (SELECT min("timestamp") FROM stock_prices WHERE symbol = %(symbol)s)),'
        " (SELECT day FROM last)",
        {"symbol": symbol, "start": start, "end": end, "back": max(sessions - 1, 0)},
    ).fetchall()
    window = [symbol, first, last]
    bars = _frame(
        conn,
        'SELECT p."timestamp", p.close, p.volume, f.sma_20, f.bb_upper, f.bb_lower, f.rsi_14'
        ' FROM stock_prices AS p LEFT JOIN price_features AS f USING (symbol, "timestamp")'
        ' WHERE p.symbol = %s AND p."timestamp" BETWEEN %s AND %s ORDER BY p."timestamp"',
        window,
    )
    anomalies = _frame(
        conn,
        'SELECT DISTINCT "timestamp", method FROM anomalies'
        ' WHERE symbol = %s AND "timestamp" BETWEEN %s AND %s ORDER BY 1, 2',
        window,
    )
    alerts = _frame(
        conn,
        'SELECT "timestamp", p_value, label FROM alerts'
        ' WHERE symbol = %s AND "timestamp" BETWEEN %s AND %s ORDER BY 1',
        window,
    )
    return bars, anomalies, alerts


def stored_symbols(conn: psycopg.Connection) -> list[str]:
    """The symbols with prices stored (an index-only scan: one entry per symbol)."""
    rows = conn.execute(
        "WITH RECURSIVE s AS (SELECT min(symbol) AS symbol FROM stock_prices"
        " UNION ALL SELECT (SELECT min(symbol) FROM stock_prices WHERE symbol > s.symbol)"
        " FROM s WHERE s.symbol IS NOT NULL) SELECT symbol FROM s WHERE symbol IS NOT NULL"
    ).fetchall()
    return [symbol for (symbol,) in rows]


def detection_quality_table(conn: psycopg.Connection) -> pd.DataFrame:
    """Each method's (and the consensus's and alert flag's) quality over all kinds."""
    return _frame(
        conn,
        "SELECT method, detections, events, events_found, precision, recall, f1, flag_rate,"
        " recall_at_1pct FROM detection_quality WHERE kind = 'all' ORDER BY f1 DESC NULLS LAST",
    )


def alert_rates(conn: psycopg.Connection, symbols: list[str], sessions: int) -> pd.DataFrame:
    """Per symbol, its alerts among its latest `sessions` scored sessions."""
    return _frame(
        conn,
        "SELECT symbol, count(*)::int AS scored, count(*) FILTER (WHERE is_alert)::int AS alerts"
        " FROM (SELECT symbol, is_alert, row_number() OVER"
        '  (PARTITION BY symbol ORDER BY "timestamp" DESC) AS back FROM alert_scores'
        "  WHERE symbol = ANY(%s) AND p_value IS NOT NULL) AS s"
        " WHERE back <= %s GROUP BY symbol ORDER BY symbol",
        [symbols, sessions],
    )


def flag_history(
    conn: psycopg.Connection, method: str, windows: dict, sessions: int
) -> pd.DataFrame:
    """Per symbol, the method's flagged days and the stored sessions among the `sessions`
    sessions before its window (`windows`: symbol -> SessionWindow)."""
    live = {s: w for s, w in windows.items() if not w.is_empty}
    return _frame(
        conn,
        "WITH w AS (SELECT * FROM unnest(%s::text[], %s::date[]) AS w(symbol, first)),"
        ' h AS (SELECT w.symbol, w.first, (SELECT min(d) FROM (SELECT p."timestamp" AS d'
        '  FROM stock_prices AS p WHERE p.symbol = w.symbol AND p."timestamp" < w.first'
        '  ORDER BY p."timestamp" DESC LIMIT %s) AS back) AS since FROM w)'
        " SELECT h.symbol,"
        "  (SELECT count(*) FROM stock_prices AS p WHERE p.symbol = h.symbol"
        '   AND p."timestamp" >= h.since AND p."timestamp" < h.first)::int AS sessions,'
        '  (SELECT count(DISTINCT a."timestamp") FROM anomalies AS a WHERE a.symbol = h.symbol'
        '   AND a.method = %s AND a."timestamp" >= h.since AND a."timestamp" < h.first)::int'
        "   AS flagged FROM h ORDER BY h.symbol",
        [list(live), [w.start for w in live.values()], sessions, method],
    )


def anomaly_counts(
    conn: psycopg.Connection, days: int | None = None, today: dt.date | None = None
) -> pd.DataFrame:
    """Anomalies per method and type: stored ones, or those of the last `days` market days up to
    `today` (counted as `anomaly_stats` counts)."""
    return _frame(
        conn,
        "SELECT method, anomaly_type, count(*)::int AS anomalies FROM anomalies"
        ' WHERE %(days)s::int IS NULL OR ("timestamp" <= coalesce(%(today)s, current_date)'
        ' AND "timestamp" > coalesce(%(today)s, current_date) - %(days)s::int)'
        " GROUP BY 1, 2 ORDER BY 1, 2",
        {"days": days, "today": today},
    )


def latest_sessions(conn: psycopg.Connection) -> pd.DataFrame:
    """Each symbol's latest stored session (the `latest_prices` view)."""
    return _frame(conn, 'SELECT symbol, "timestamp" FROM latest_prices ORDER BY symbol')


def rejected_rows(conn: psycopg.Connection) -> int:
    """Bars the quality gate has refused, ever (`rejected_prices` only grows)."""
    [(count,)] = conn.execute("SELECT count(*) FROM rejected_prices").fetchall()
    return count

"""The `alert_deliveries` ledger in SQL: plan, claim, settle — each a short transaction.

A claim marks rows `sending` and commits before anything leaves: a row is sent at most once even
when two evaluations run together (the second skips locked and claimed rows) or a run is
retried. A process killed between the claim and the outcome leaves the row `sending`: it shows
in `marketpulse alerts --undelivered` and is not sent again by itself (at most once).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

CLAIMABLE = ("pending", "failed")
UNDELIVERED = ("pending", "sending", "failed", "gave_up")


def current_alerts(conn: psycopg.Connection) -> pd.DataFrame:
    """Every alerted symbol-session with the numbers behind it."""
    rows = conn.execute(
        'SELECT id, symbol, "timestamp", p_value, methods, market_wide, return_pct,'
        " details::text AS details, p_return, p_volatility_adjusted, p_range, p_volume,"
        ' p_market_relative FROM alert_scores WHERE is_alert ORDER BY symbol, "timestamp"'
    )
    frame = pd.DataFrame(rows.fetchall(), columns=[c.name for c in rows.description])
    return frame.astype({"timestamp": "datetime64[ns]", "id": "int64", "p_value": "float64"})


def known_deliveries(conn: psycopg.Connection) -> pd.DataFrame:
    rows = conn.execute(
        'SELECT alert_id, channel, symbol, "timestamp", p_value, status'
        " FROM alert_deliveries WHERE kind = 'alert'"
    )
    frame = pd.DataFrame(rows.fetchall(), columns=[c.name for c in rows.description])
    return frame.astype({"timestamp": "datetime64[ns]", "alert_id": "int64", "p_value": "float64"})


def record_plan(conn: psycopg.Connection, plan: pd.DataFrame) -> None:
    """The planned rows, unless another evaluation planned them first (the key decides)."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO alert_deliveries"
            ' (alert_id, channel, kind, symbol, "timestamp", p_value, status, reason)'
            " VALUES (%s, %s, 'alert', %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [
                (
                    int(r.alert_id),
                    r.channel,
                    r.symbol,
                    r.timestamp.date(),
                    float(r.p_value),
                    r.status,
                    r.reason,
                )
                for r in plan.itertuples(index=False)
            ],
        )


def withdraw_gone(conn: psycopg.Connection) -> int:
    """Deliveries not yet made whose alert a recomputation took back: they never go out."""
    return conn.execute(
        "UPDATE alert_deliveries AS d SET status = 'withdrawn', reason = 'no longer an alert',"
        " updated_at = now()"
        " WHERE d.kind = 'alert' AND d.status IN ('pending', 'failed')"
        " AND NOT EXISTS (SELECT 1 FROM alert_scores AS s WHERE s.id = d.alert_id AND s.is_alert)"
    ).rowcount


def add_delivery(
    conn: psycopg.Connection,
    key: int,
    channel: str,
    kind: str,
    message: dict,
    session: dt.date | None = None,
) -> None:
    """A digest or run-failure delivery, once per key and channel."""
    conn.execute(
        'INSERT INTO alert_deliveries (alert_id, channel, kind, "timestamp", status, message)'
        " VALUES (%s, %s, %s, %s, 'pending', %s) ON CONFLICT DO NOTHING",
        [key, channel, kind, session, Jsonb(message)],
    )


def due(conn: psycopg.Connection, channel: str, kind: str, now: dt.datetime) -> list[int]:
    """The keys of the deliveries of `kind` due on `channel` (not claimed: see `claim`)."""
    rows = conn.execute(
        "SELECT alert_id FROM alert_deliveries WHERE channel = %s AND kind = %s"
        " AND status = ANY(%s) AND coalesce(next_attempt_at, '-infinity') <= %s"
        ' ORDER BY "timestamp", alert_id',
        [channel, kind, list(CLAIMABLE), now],
    ).fetchall()
    return [key for (key,) in rows]


def claim(
    conn: psycopg.Connection,
    channel: str,
    kinds: Sequence[str],
    now: dt.datetime,
    keys: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Due deliveries of `kinds` on `channel` (only `keys`, if given), now `sending` and
    committed: alert_id, kind, timestamp, attempts, message. What is sent one at a time is
    claimed one at a time, so a process killed mid-way strands only the one in flight."""
    with conn.transaction():
        rows = conn.execute(
            "UPDATE alert_deliveries AS d SET status = 'sending', attempts = d.attempts + 1,"
            " updated_at = now()"
            " FROM (SELECT alert_id, channel FROM alert_deliveries"
            "  WHERE channel = %s AND kind = ANY(%s) AND status = ANY(%s)"
            "  AND coalesce(next_attempt_at, '-infinity') <= %s"
            "  AND (%s::bigint[] IS NULL OR alert_id = ANY(%s::bigint[]))"
            '  ORDER BY "timestamp", alert_id FOR UPDATE SKIP LOCKED) AS due'
            " WHERE d.alert_id = due.alert_id AND d.channel = due.channel"
            ' RETURNING d.alert_id, d.kind, d."timestamp", d.attempts, d.message',
            [channel, list(kinds), list(CLAIMABLE), now, keys, keys],
        )
        found = rows.fetchall()
    return pd.DataFrame(found, columns=["alert_id", "kind", "timestamp", "attempts", "message"])


def settle(
    conn: psycopg.Connection,
    keys: Sequence[int],
    channel: str,
    now: dt.datetime,
    message: dict,
    error: str | None = None,
    retry_at: dt.datetime | None = None,
    sent: bool | None = None,
) -> None:
    """The outcome of claimed deliveries: sent (`error` then notes what went only partly);
    failed (tried again from `retry_at`); or, with no `retry_at` left, given up."""
    sent = error is None if sent is None else sent
    status = "sent" if sent else "failed" if retry_at else "gave_up"
    conn.execute(
        "UPDATE alert_deliveries SET status = %s, last_error = %s, next_attempt_at = %s,"
        " sent_at = CASE WHEN %s = 'sent' THEN %s END, message = %s, updated_at = now()"
        " WHERE channel = %s AND alert_id = ANY(%s) AND status = 'sending'",
        [status, error, retry_at, status, now, Jsonb(message), channel, list(keys)],
    )


def undelivered(conn: psycopg.Connection, symbol: str | None = None) -> pd.DataFrame:
    """What did not (yet) go out, newest first: failed, given up, pending, or stuck sending."""
    rows = conn.execute(
        'SELECT alert_id::text AS id, kind, symbol, "timestamp", channel, status, attempts,'
        " last_error, next_attempt_at, updated_at FROM alert_deliveries"
        " WHERE status = ANY(%s) AND (%s::text IS NULL OR symbol = %s)"
        ' ORDER BY "timestamp" DESC NULLS LAST, symbol, channel',
        [list(UNDELIVERED), symbol, symbol],
    )
    return pd.DataFrame(rows.fetchall(), columns=[c.name for c in rows.description])


def requeue(conn: psycopg.Connection) -> int:
    """Deliveries given up, or stuck `sending` (a killed process), due again: an operator's
    decision (`marketpulse notify retry`), since one stuck mid-way may have reached its
    receiver."""
    return conn.execute(
        "UPDATE alert_deliveries SET status = 'failed', next_attempt_at = NULL, attempts = 0,"
        " updated_at = now() WHERE status IN ('gave_up', 'sending')"
    ).rowcount

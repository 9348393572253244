"""Repairs a user runs by hand (`marketpulse db remove-future`)."""

from __future__ import annotations

import datetime as dt

import psycopg
from psycopg import sql

from marketpulse_pipeline.storage.tables import (
    ALERT_SCORES,
    ANOMALIES,
    ANOMALY_CONSENSUS,
    CORPORATE_ACTIONS,
    INJECTED_ANOMALIES,
    PRICE_FEATURES,
    STOCK_PRICES,
)

_QUARANTINE_FUTURE = """
INSERT INTO rejected_prices
    (symbol, "timestamp", open, high, low, close, volume, source, source_ref, reason, run_id)
SELECT symbol, "timestamp", open::text, high::text, low::text, close::text, volume::text, source,
       'stock_prices', 'dated after ' || %(latest)s::date || ', the latest completed session',
       'remove-future'
  FROM stock_prices WHERE "timestamp" > %(latest)s
"""


def remove_future(conn: psycopg.Connection, latest: dt.date) -> dict[str, int]:
    """Rows dated after `latest` out of every per-symbol table, in one transaction: the bars are
    kept in `rejected_prices` with the reason. Rows up to `latest` were computed from bars up to
    their own day only, so they stay valid. Returns the rows removed per table."""
    removed = {}
    with conn.transaction():
        conn.execute(_QUARANTINE_FUTURE, {"latest": latest})
        for table in (
            STOCK_PRICES,
            INJECTED_ANOMALIES,
            CORPORATE_ACTIONS,
            PRICE_FEATURES,
            ANOMALIES,
            ANOMALY_CONSENSUS,
            ALERT_SCORES,
        ):
            query = sql.SQL('DELETE FROM {} WHERE "timestamp" > %s').format(
                sql.Identifier(table.name)
            )
            rows = conn.execute(query, [latest]).rowcount
            if rows:
                removed[table.name] = rows
        conn.execute(
            "UPDATE watermarks SET valid_through = %s, updated_at = now() WHERE valid_through > %s",
            [latest, latest],
        )
    return removed

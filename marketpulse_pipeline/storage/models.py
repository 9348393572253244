"""`detector_models` in SQL: each symbol's newest fitted model per method, between runs.

Written in the transaction that writes the method's anomalies, so a model and the rows it
scored land (or roll back) together.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import psycopg


def load_models(
    conn: psycopg.Connection, method: str, symbols: Sequence[str]
) -> dict[str, tuple[pd.Timestamp, str, bytes]]:
    """Symbol → (refit point, version, pickled model) of the symbols' stored models."""
    rows = conn.execute(
        "SELECT symbol, fitted_at, version, model FROM detector_models"
        " WHERE method = %s AND symbol = ANY(%s)",
        [method, list(symbols)],
    )
    return {
        symbol: (pd.Timestamp(fitted_at), version, bytes(model))
        for symbol, fitted_at, version, model in rows
    }


def store_models(
    conn: psycopg.Connection, method: str, models: Sequence[tuple[str, pd.Timestamp, str, bytes]]
) -> None:
    """Replace each symbol's stored model with the given one (COPY into a staging table)."""
    if not models:
        return
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
        raise RuntimeError("store_models writes inside the transaction of the method's rows")
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS staged_models"
        " (symbol text, fitted_at date, version text, model bytea) ON COMMIT DELETE ROWS"
    )
    conn.execute("TRUNCATE staged_models")  # a second call in the same transaction
    with conn.cursor().copy(
        "COPY staged_models (symbol, fitted_at, version, model) FROM STDIN"
    ) as copy:
        for symbol, point, version, model in models:
            copy.write_row((symbol, point.date(), version, model))
    conn.execute(
        "INSERT INTO detector_models (method, symbol, fitted_at, version, model)"
        " SELECT %s, symbol, fitted_at, version, model FROM staged_models"
        " ON CONFLICT (method, symbol) DO UPDATE SET fitted_at = excluded.fitted_at,"
        " version = excluded.version, model = excluded.model, created_at = now()",
        [method],
    )

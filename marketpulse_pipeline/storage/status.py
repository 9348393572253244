"""How each asset's last run ended per symbol: what `pipeline_health` reports as a failure."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg


def record_outcome(
    conn: psycopg.Connection,
    asset: str,
    symbols: Sequence[str],
    run_id: str,
    failure: str | None,
) -> None:
    """The last run of `asset` for `symbols` succeeded (`failure` None) or failed with it."""
    conn.execute(
        "INSERT INTO asset_status AS a (asset, symbol, run_id, succeeded, message)"
        " SELECT %s, s, %s, %s, %s FROM unnest(%s::text[]) AS s"
        " ON CONFLICT (asset, symbol) DO UPDATE SET run_id = excluded.run_id,"
        " succeeded = excluded.succeeded, message = excluded.message, finished_at = now()",
        [asset, run_id, failure is None, failure, list(symbols)],
    )

"""Versioned SQL migrations, applied in order, once, under a lock.

Files in `migrations/` are named `NNNN_description.sql`; `schema_migrations` records which
versions ran. All pending files run in one transaction, so a failure leaves the schema as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import pandas as pd
import psycopg
from psycopg import sql

from marketpulse_pipeline.calendar import nyse

SCHEMA = "marketpulse"
# Lets psql users and dashboards write unqualified table names. Database settings are not copied
# by CREATE DATABASE ... TEMPLATE or a restore, so this runs every time, not in one migration.
# It needs database ownership; without it, set search_path on the connecting role (see README).
_DEFAULT_SEARCH_PATH = f"""
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET search_path = {SCHEMA}, public', current_database());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'search_path not set on database %: not its owner', current_database();
END
$$
"""
_MIGRATION_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The migrations shipped with the package, in version order."""
    found = []
    for entry in resources.files("marketpulse_pipeline.storage").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def migrate(conn: psycopg.Connection) -> list[Migration]:
    """Apply the pending migrations; return those applied (none when the schema is current)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('marketpulse.migrations'))")
        # A locked-down role may use a schema made for it without the right to create one.
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [SCHEMA]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
        conn.execute(sql.SQL("SET LOCAL search_path = {}, public").format(sql.Identifier(SCHEMA)))
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer PRIMARY KEY,
                name       text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        pending = [m for m in migrations() if m.version not in applied]
        for migration in pending:
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                [migration.version, migration.name],
            )
        conn.execute(_DEFAULT_SEARCH_PATH)
        _sync_market_sessions(conn)
    return pending


def schema_version(conn: psycopg.Connection) -> int:
    """The newest migration applied to `conn`'s database, 0 before the first; reads only, so
    read-only roles can check the schema they are about to query."""
    table = sql.Identifier(SCHEMA, "schema_migrations")
    if conn.execute("SELECT to_regclass(%s)", [table.as_string(conn)]).fetchone()[0] is None:
        return 0
    query = sql.SQL("SELECT coalesce(max(version), 0) FROM {}").format(table)
    return int(conn.execute(query).fetchone()[0])


def _sync_market_sessions(conn: psycopg.Connection) -> None:
    """Keep `market_sessions` (the NYSE calendar, for SQL users) as far ahead as the calendar."""
    calendar = nyse()
    last = conn.execute("SELECT max(session) FROM market_sessions").fetchone()[0]
    if last is not None and last >= calendar.last_session.date():
        return
    closes = calendar.closes
    if last is not None:
        closes = closes[closes.index > pd.Timestamp(last)]
    conn.execute(
        "INSERT INTO market_sessions (session, close_at)"
        " SELECT * FROM unnest(%s::date[], %s::timestamptz[]) ON CONFLICT DO NOTHING",
        [list(closes.index.date), [t.to_pydatetime() for t in closes]],
    )

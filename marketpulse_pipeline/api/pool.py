"""The API's database connections: pools opened once at start, so a request never pays for a
connection's setup, and every statement bounded by a timeout.

Reads get what `connect_readonly` gives the CLI — MarketPulse's schema on the search path,
read-only transactions, a schema at the version this code needs — on a pool of their own (the
read-only role, where one is configured); the feedback route writes through a small second
pool, opened only when writes are on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool

from marketpulse_pipeline.storage.database import (
    CONNECT_TIMEOUT_S,
    READ_ONLY,
    require_current_schema,
    server_options,
)

POOL_WAIT_S = 3.0
"""How long a request waits for a connection (the database down, or every one busy) before
it answers 503: less than a health probe's timeout."""


def _pool(url: str, name: str, size: int, options: str, wait_s: float) -> ConnectionPool:
    return ConnectionPool(
        url,
        min_size=min(2, size),
        max_size=size,
        name=name,
        timeout=wait_s,
        # A quick round trip before a connection is handed out: after a database restart the
        # pooled ones are broken, and each would otherwise fail one request with a 503.
        check=ConnectionPool.check_connection,
        open=False,
        kwargs={
            "autocommit": True,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": name,
            "options": server_options(options),
        },
    )


class Pools:
    """A read pool and, with writes on, a write pool; `open` at the app's start, `close` at
    its end. Neither waits for the database at start: a server that is down is a 503 per
    request (and the pools keep reconnecting), not a process that will not start."""

    def __init__(
        self,
        read_url: str,
        write_url: str | None,
        *,
        size: int,
        statement_timeout_ms: int,
        wait_s: float = POOL_WAIT_S,
    ) -> None:
        timeout = f"-c statement_timeout={statement_timeout_ms}"
        self.read = _pool(
            read_url,
            "marketpulse-api-read",
            size,
            f"{READ_ONLY} {timeout}",
            wait_s,
        )
        self.write = (
            None
            if write_url is None
            else _pool(write_url, "marketpulse-api-write", 2, timeout, wait_s)
        )
        self._schema_checked = False

    def open(self) -> None:
        for pool in (self.read, self.write):
            if pool is not None:
                pool.open(wait=False)

    def close(self) -> None:
        for pool in (self.read, self.write):
            if pool is not None:
                pool.close()

    @contextmanager
    def reading(self) -> Iterator[psycopg.Connection]:
        """A read-only connection; the first one checks the schema's version, as
        `connect_readonly` does, so an outdated database is a clear 503, not a missing column."""
        with self.read.connection() as conn:
            if not self._schema_checked:
                require_current_schema(conn)
                self._schema_checked = True
            yield conn

    @contextmanager
    def writing(self) -> Iterator[psycopg.Connection]:
        """A connection that may write (only the feedback route asks for one)."""
        if self.write is None:
            raise RuntimeError("writes are off: no write pool")
        with self.write.connection() as conn:
            yield conn

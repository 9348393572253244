"""One writer per symbol: a run holds a lock on each of its symbols from its first step to its
end, so two runs touching the same symbol never interleave while runs on others go on.

The locks are PostgreSQL session-level advisory locks on a connection of their own: they need
no cleanup after a crash (the server drops them with the connection), and every process that
writes — the CLI, the daemon's runs, `dagster dev` — takes the same ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import psycopg

from marketpulse_pipeline.session_plan import PlanError
from marketpulse_pipeline.storage.database import CONNECT_TIMEOUT_S

_NAMESPACE = "marketpulse.symbol"
_TRY = "SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))"
_WAIT = "SELECT pg_advisory_lock(hashtext(%s), hashtext(%s))"
_HOLDER = """
SELECT a.application_name, a.backend_start
  FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
   AND l.classid = hashtext(%s)::oid AND l.objid = hashtext(%s)::oid
"""


class SymbolLocks:
    """The symbol locks of one run."""

    def __init__(self, url: str, run_id: str) -> None:
        self._conn = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=f"marketpulse run {run_id}",
        )
        self.held: set[str] = set()

    def acquire(
        self, symbols: Iterable[str], wait_seconds: float, log: Callable[[str], None]
    ) -> None:
        """Lock each symbol not held yet, in one global order (no deadlock between two runs),
        waiting up to `wait_seconds` for a run that holds one."""
        for symbol in sorted(set(symbols) - self.held):
            if not self._conn.execute(_TRY, [_NAMESPACE, symbol]).fetchone()[0]:
                holder = self._holder(symbol)
                log(f"{symbol} is being processed by {holder}: waiting up to {wait_seconds:.0f}s")
                self._conn.execute(f"SET lock_timeout = {int(wait_seconds * 1000)}")
                try:
                    self._conn.execute(_WAIT, [_NAMESPACE, symbol])
                except psycopg.errors.LockNotAvailable:
                    raise PlanError(
                        f"{symbol} is still being processed by {holder} after"
                        f" {wait_seconds:.0f}s; run again when it has finished"
                    ) from None
            self.held.add(symbol)

    def _holder(self, symbol: str) -> str:
        row = self._conn.execute(_HOLDER, [_NAMESPACE, symbol]).fetchone()
        if row is None:
            return "another run"
        name, since = row
        return f"{name or 'another session'} (connected {since:%Y-%m-%d %H:%M:%S %Z})"

    @property
    def lost(self) -> bool:
        """The connection broke (a server restart): its locks are gone with it."""
        return self._conn.broken or self._conn.closed

    def release(self) -> None:
        """Let go of every symbol (closing the connection drops its locks)."""
        self._conn.close()
        self.held.clear()

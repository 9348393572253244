"""Connections (timeout, read-only) and the embedded server's recovery from killed commands.

The embedded tests start real servers in fresh homes, kill them or the commands starting them
with SIGKILL, and check that the next start works; each stops its server, even on failure.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from marketpulse_pipeline.storage.database import (
    CONNECT_TIMEOUT_S,
    EmbeddedServerError,
    SchemaOutdated,
    connect,
    connect_readonly,
    embedded_data_dir,
    start_embedded,
    stop_embedded,
)
from marketpulse_pipeline.storage.migrations import SCHEMA, migrations

START = (
    "import sys; from pathlib import Path;"
    " from marketpulse_pipeline.storage.database import start_embedded;"
    " print('imported', flush=True); sys.stdin.readline();"
    " print(start_embedded(Path(sys.argv[1])), flush=True)"
)
"""A first command in miniature: it says when its imports are done, and starts on a line."""


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A URL whose server accepts TCP connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        accepted: list[socket.socket] = []

        def accept() -> None:
            while True:
                try:
                    accepted.append(listener.accept()[0])
                except OSError:  # the listener closed
                    return

        threading.Thread(target=accept, daemon=True).start()
        yield f"postgresql://nobody@127.0.0.1:{listener.getsockname()[1]}/nothing"
        for connection in accepted:
            connection.close()


@pytest.mark.slow
@pytest.mark.parametrize("opener", [connect, connect_readonly])
def test_a_server_that_never_answers_fails_after_the_connect_timeout(silent_server, opener):
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="timeout"):
        opener(silent_server)
    assert CONNECT_TIMEOUT_S - 1 < time.monotonic() - started < CONNECT_TIMEOUT_S + 5


@pytest.fixture
def reader(database_url: str) -> Iterator[tuple[str, str]]:
    """A role with USAGE on the schema and SELECT on its tables, nothing more: name and URL."""
    role = f"marketpulse_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as owner:
        owner.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'reader-secret'").format(sql.Identifier(role))
        )
        owner.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.Identifier(SCHEMA), sql.Identifier(role)
            )
        )
        owner.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(
                sql.Identifier(SCHEMA), sql.Identifier(role)
            )
        )
    yield role, make_conninfo(database_url, user=role, password="reader-secret")
    with psycopg.connect(database_url, autocommit=True) as owner:
        owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        owner.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_select_only_role_reads_through_connect_readonly(reader):
    role, url = reader
    with connect_readonly(url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)
        assert conn.execute("SELECT count(*) FROM market_sessions").fetchone()[0] > 0
        assert conn.execute("SHOW application_name").fetchone() == ("marketpulse",)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        connect(url)  # migrating needs rights the reader lacks


def test_connect_readonly_refuses_writes_even_from_the_owner(database_url):
    with (
        connect_readonly(database_url) as conn,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        conn.execute("DELETE FROM market_sessions")


def test_connect_readonly_reports_an_outdated_schema_and_leaves_it_alone(database_url):
    newest = migrations()[-1].version
    with psycopg.connect(database_url, autocommit=True) as owner:
        owner.execute(f"DELETE FROM {SCHEMA}.schema_migrations WHERE version = {newest}")
        with pytest.raises(SchemaOutdated) as outdated:
            connect_readonly(database_url)
        assert str(outdated.value) == (
            f"the database schema is at version {newest - 1}, this MarketPulse needs {newest}:"
            " run a pipeline command (e.g. `marketpulse update`) once to migrate it"
        )
        versions = owner.execute(f"SELECT max(version) FROM {SCHEMA}.schema_migrations")
        assert versions.fetchone() == (newest - 1,)
        owner.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
        with pytest.raises(SchemaOutdated, match="at version 0,"):
            connect_readonly(database_url)
        assert owner.execute("SELECT to_regnamespace(%s)", [SCHEMA]).fetchone() == (None,)


@pytest.fixture
def home(embedded_home: Path) -> Path:
    return embedded_home


def _start_in_subprocesses(home: Path, count: int) -> list[subprocess.Popen[str]]:
    """`count` runs of `START`, each in its own process group (so a SIGKILL can take initdb and
    pg_ctl with it), told to start at the same moment once all have imported."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", START, str(home)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for _ in range(count)
    ]
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline() == "imported\n"
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    return processes


def _assert_serves_queries(url: str) -> None:
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("marketpulse",)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("seconds", "whole_group"),
    [(0.05, True), (0.15, True), (0.6, True), (1.5, True), (2.3, True), (0.6, False), (1.5, False)],
)
def test_a_first_setup_killed_midway_does_not_break_the_next_start(home, seconds, whole_group):
    """Killed while making the directory, in initdb, in `pg_ctl start` or creating the
    database; without its process group, initdb or pg_ctl carry on as orphans."""
    [process] = _start_in_subprocesses(home, 1)
    time.sleep(seconds)
    if whole_group:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.kill()
    process.communicate()
    _assert_serves_queries(start_embedded(home))


@pytest.mark.slow
def test_a_killed_server_leaves_nothing_that_stops_the_next_start(home):
    url = start_embedded(home)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept AS SELECT 1 AS x")
    # A backend busy computing does not notice its server dying: it keeps the shared memory.
    busy = psycopg.connect(url, autocommit=True)

    def compute() -> None:
        with contextlib.suppress(psycopg.OperationalError):  # its backend gets killed
            busy.execute("SELECT count(*) FROM generate_series(1, 1e11)")

    query = threading.Thread(target=compute, daemon=True)
    query.start()
    with psycopg.connect(url) as conn:
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%generate_series%'"
            " AND state = 'active' AND pid <> pg_backend_pid()"
        ).fetchone() == (0,):
            time.sleep(0.05)
    pid_file = embedded_data_dir(home) / "postmaster.pid"
    server = psutil.Process(int(pid_file.read_text().split()[0]))
    server.kill()
    with contextlib.suppress(psutil.NoSuchProcess):  # reaped
        while server.status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.01)  # SIGKILL takes effect asynchronously
    assert pid_file.exists()

    assert start_embedded(home) == url
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT x FROM kept").fetchall() == [(1,)]
    query.join(timeout=10)
    busy.close()


@pytest.mark.slow
def test_a_postmaster_pid_naming_another_process_is_stale(home):
    url = start_embedded(home)
    stop_embedded(home)
    data_dir = embedded_data_dir(home)
    # As after a reboot that handed the dead server's pid to some other program (here: pytest).
    (data_dir / "postmaster.pid").write_text(
        f"{os.getpid()}\n{data_dir}\n{int(time.time())}\n5432\n{data_dir}\n\n 0 0\nready   \n"
    )
    assert start_embedded(home) == url
    _assert_serves_queries(url)


@pytest.mark.slow
def test_a_data_directory_without_the_setup_marker_keeps_its_databases(home):
    """Homes made before MarketPulse marked finished setups hold a database: not re-made."""
    url = start_embedded(home)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept AS SELECT 1 AS x")
    stop_embedded(home)
    (embedded_data_dir(home) / "marketpulse_setup_done").unlink()
    assert start_embedded(home) == url
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT x FROM kept").fetchall() == [(1,)]


@pytest.mark.slow
def test_a_broken_data_directory_with_databases_is_refused_not_deleted(home):
    start_embedded(home)
    stop_embedded(home)
    data_dir = embedded_data_dir(home)
    databases = sorted(path.name for path in (data_dir / "base").iterdir())
    (data_dir / "PG_VERSION").unlink()
    with pytest.raises(EmbeddedServerError) as refused:
        start_embedded(home)
    assert str(data_dir) in str(refused.value) and "\n" not in str(refused.value)
    assert sorted(path.name for path in (data_dir / "base").iterdir()) == databases


@pytest.mark.slow
def test_two_first_commands_at_once_both_succeed(home):
    processes = _start_in_subprocesses(home, 2)
    outcomes = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outcomes
    [url] = {stdout.strip() for stdout, _ in outcomes}
    _assert_serves_queries(url)

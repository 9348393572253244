"""One writer per symbol: a run waits for another run on the same symbols, fails with a clear
message when that takes too long, and never waits for runs on other symbols."""

import threading
import time

import dagster as dg
import psycopg
from psycopg import sql

from marketpulse_pipeline.automation import DAILY_JOB
from marketpulse_pipeline.storage.symbol_locks import SymbolLocks

WINDOW = {"start": "2025-07-01", "end": "2025-07-03"}


def launch(defs, instance, symbols: list[str], wait: float) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(DAILY_JOB).execute_in_process(
        run_config={
            "resources": {
                "window": {"config": WINDOW},
                "database": {
                    "config": {
                        "url": {"env": "MARKETPULSE_DATABASE_URL"},
                        "lock_wait_seconds": wait,
                    }
                },
            }
        },
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": symbols[0],
            "dagster/asset_partition_range_end": symbols[-1],
        },
        raise_on_error=False,
    )


def rows(conn, symbol: str) -> int:
    return conn.execute("SELECT count(*) FROM stock_prices WHERE symbol = %s", [symbol]).fetchone()[
        0
    ]


def failure(result: dg.ExecuteInProcessResult) -> str:
    [event] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    error = event.step_failure_data.error
    while error.cause is not None:
        error = error.cause
    return error.message


def test_a_run_gives_up_on_a_symbol_another_run_holds(make_defs, instance, conn, database_url):
    defs = make_defs(MARKETPULSE_SYMBOLS="AAPL,MSFT")
    other = SymbolLocks(database_url, "other-run")
    other.acquire(["MSFT"], 1, print)
    try:
        result = launch(defs, instance, ["AAPL", "MSFT"], wait=1)
    finally:
        other.release()
    assert not result.success
    assert "MSFT is still being processed by marketpulse run other-run" in failure(result)
    assert rows(conn, "AAPL") == rows(conn, "MSFT") == 0  # nothing was written


def test_a_run_waits_for_the_run_holding_its_symbols(make_defs, instance, conn, database_url):
    defs = make_defs(MARKETPULSE_SYMBOLS="AAPL,MSFT")
    other = SymbolLocks(database_url, "other-run")
    other.acquire(["AAPL"], 1, print)
    releaser = threading.Timer(2.0, other.release)
    releaser.start()
    began = time.monotonic()
    result = launch(defs, instance, ["AAPL", "MSFT"], wait=60)
    releaser.join()
    assert result.success and time.monotonic() - began >= 2.0
    assert rows(conn, "AAPL") == rows(conn, "MSFT") == 3


def test_runs_on_other_symbols_do_not_wait(make_defs, instance, conn, database_url):
    defs = make_defs(MARKETPULSE_SYMBOLS="AAPL,MSFT")
    other = SymbolLocks(database_url, "other-run")
    other.acquire(["AAPL"], 1, print)
    try:
        result = launch(defs, instance, ["MSFT"], wait=0.5)
    finally:
        other.release()
    assert result.success and rows(conn, "MSFT") == 3


def test_a_database_refusing_connections_for_a_moment_is_retried(
    make_defs, instance, conn, server_url
):
    defs = make_defs(MARKETPULSE_SYMBOLS="AAPL,MSFT")
    name = conn.info.dbname
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
        reopen = threading.Timer(
            1.5,
            lambda: psycopg.connect(server_url, autocommit=True).execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(name))
            ),
        )
        reopen.start()
        result = launch(defs, instance, ["AAPL", "MSFT"], wait=5)
        reopen.join()
    retried = [
        e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    ]
    assert result.success and retried
    assert rows(conn, "AAPL") == rows(conn, "MSFT") == 3

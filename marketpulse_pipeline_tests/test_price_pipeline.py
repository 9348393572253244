"""The price assets end to end: Dagster runs writing to a real PostgreSQL database."""

import datetime as dt
from pathlib import Path

import dagster as dg
import pandas as pd

from marketpulse_pipeline.calendar import SessionWindow, sessions_between
from marketpulse_pipeline.cli import main
from marketpulse_pipeline.runner import run_pipeline
from marketpulse_pipeline.sources.synthetic import SyntheticSource

SUMMER = (dt.date(2025, 6, 2), dt.date(2025, 7, 31))


def run(defs, instance, symbols=("AAPL", "GOOGL"), **window):
    return run_pipeline(defs, instance, list(symbols), progress=lambda _: None, **window)


def prices(conn) -> pd.DataFrame:
    rows = conn.execute(
        'SELECT symbol, "timestamp", open, high, low, close, volume, source FROM stock_prices'
        ' ORDER BY symbol, "timestamp"'
    ).fetchall()
    return pd.DataFrame(
        rows, columns=["symbol", "timestamp", "open", "high", "low", "close", "volume", "source"]
    )


def check_results(instance: dg.DagsterInstance, run_id: str) -> dict[str, dg.AssetCheckEvaluation]:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    return {
        r.event_log_entry.dagster_event.asset_check_evaluation_data.check_name: (
            r.event_log_entry.dagster_event.asset_check_evaluation_data
        )
        for r in records
    }


def test_a_window_stores_every_session_and_the_ground_truth(make_defs, instance, conn):
    [outcome, _quality] = run(make_defs(), instance, start=SUMMER[0], end=SUMMER[1])
    assert outcome.success and outcome.symbols == ["AAPL", "GOOGL"]
    stored = prices(conn)
    sessions = list(sessions_between(*SUMMER).date)
    assert stored.groupby("symbol")["timestamp"].apply(list).to_dict() == {
        "AAPL": sessions,
        "GOOGL": sessions,
    }
    truth = conn.execute(
        'SELECT symbol, "timestamp", kind FROM injected_anomalies ORDER BY 1, 2'
    ).fetchall()
    expected = SyntheticSource(seed=42).injected_anomalies(
        ["AAPL", "GOOGL"], SessionWindow(*SUMMER)
    )
    assert [(s, t.isoformat(), k) for s, t, k in truth] == [
        (s, t.date().isoformat(), k)
        for s, t, k in expected[["symbol", "timestamp", "kind"]].itertuples(index=False)
    ]


def test_one_run_materializes_every_symbol_partition(make_defs, instance):
    defs = make_defs()
    symbols = ("AAPL", "GOOGL", "MSFT")
    [outcome, _quality] = run(defs, instance, symbols=symbols, start=SUMMER[0], end=SUMMER[0])
    materialized = instance.get_records_for_run(
        outcome.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    partitions = {
        (
            r.event_log_entry.dagster_event.asset_key.to_user_string(),
            r.event_log_entry.dagster_event.partition,
        )
        for r in materialized
    }
    graph = defs.resolve_asset_graph()
    assets = {
        key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).is_partitioned
    }
    assert len(assets) == 13  # prices, ground truth, features, eight methods, consensus, alerts
    assert partitions == {(asset, symbol) for asset in assets for symbol in symbols}


def test_non_contiguous_symbols_take_one_run_per_stretch(make_defs, instance):
    outcomes = run(
        make_defs(), instance, symbols=["AAPL", "MSFT", "AMZN"], start=SUMMER[0], end=SUMMER[0]
    )
    # then AAPL's computed assets again (MSFT's and AMZN's prices may change what they read),
    # then [] scores quality
    assert [o.symbols for o in outcomes] == [["AAPL"], ["MSFT", "AMZN"], ["AAPL"], []]


def test_re_running_a_window_changes_nothing(make_defs, instance, conn):
    defs = make_defs()
    run(defs, instance, start=SUMMER[0], end=SUMMER[1])
    first = prices(conn)
    run(defs, instance, start=SUMMER[0], end=SUMMER[1])
    pd.testing.assert_frame_equal(prices(conn), first)


def test_a_run_after_missed_days_catches_up(make_defs, instance, conn):
    defs = make_defs(MARKETPULSE_START_DATE="2025-06-02")
    run(defs, instance, as_of=dt.date(2025, 6, 30))
    assert prices(conn)["timestamp"].max() == dt.date(2025, 6, 30)
    [outcome, _quality] = run(defs, instance, as_of=dt.date(2025, 7, 31))  # a month of missed runs
    assert outcome.success
    # the missed month, and the last 5 stored sessions read again (a restatement shows there)
    assert processed_window(instance, outcome.run_id, "AAPL") == "2025-06-24..2025-07-31"
    caught_up = prices(conn)

    run(defs, instance, start=SUMMER[0], end=SUMMER[1])  # the same range in one go
    pd.testing.assert_frame_equal(caught_up, prices(conn))


def processed_window(instance: dg.DagsterInstance, run_id: str, symbol: str) -> str:
    """The window a run's `stock_prices` materialization reports for one symbol."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    [window] = [
        r.event_log_entry.dagster_event.materialization.metadata["window"].value
        for r in records
        if r.event_log_entry.dagster_event.asset_key == dg.AssetKey("stock_prices")
        and r.event_log_entry.dagster_event.partition == symbol
    ]
    return window


def test_a_daily_run_processes_only_the_new_session(make_defs, instance, conn):
    defs = make_defs(MARKETPULSE_START_DATE="2025-06-02")
    run(defs, instance, as_of=dt.date(2025, 7, 30))
    before = conn.execute("SELECT max(created_at) FROM stock_prices").fetchone()[0]
    run(defs, instance, as_of=dt.date(2025, 7, 31))
    new = conn.execute(
        'SELECT symbol, "timestamp" FROM stock_prices WHERE created_at > %s', [before]
    ).fetchall()
    assert sorted(new) == [("AAPL", dt.date(2025, 7, 31)), ("GOOGL", dt.date(2025, 7, 31))]
    event = instance.get_latest_materialization_event(dg.AssetKey("stock_prices"))
    # read: the new session and the last 5 stored ones again; written: only the new one
    assert event.asset_materialization.metadata["window"].value == "2025-07-24..2025-07-31"


def test_an_explicit_window_replaces_only_that_window(make_defs, instance, conn):
    defs = make_defs()
    run(defs, instance, start=SUMMER[0], end=SUMMER[1])
    original = prices(conn)
    week = ("2025-07-07", "2025-07-11")
    outside = 'NOT "timestamp" BETWEEN %s AND %s'
    conn.execute(
        f"UPDATE stock_prices SET close = close + 0.01, high = high + 0.01 WHERE {outside}", week
    )
    run(defs, instance, start=dt.date(2025, 7, 7), end=dt.date(2025, 7, 11))
    after = prices(conn)
    inside = after["timestamp"].between(dt.date(2025, 7, 7), dt.date(2025, 7, 11))
    assert inside.sum() == 10
    pd.testing.assert_frame_equal(after[inside], original[inside])
    assert (after.loc[~inside, "close"] - original.loc[~inside, "close"]).round(6).eq(0.01).all()


def test_a_window_whose_bars_changed_reloads_the_whole_history(make_defs, instance, conn):
    """Stored bars that the source now gives otherwise (a split since they were stored):
    the whole history is reloaded, however narrow the window, and the restatement logged."""
    defs = make_defs()
    run(defs, instance, start=SUMMER[0], end=SUMMER[1])
    original = prices(conn)
    conn.execute(
        "UPDATE stock_prices SET close = close * 2, high = high * 2, open = open * 2, low = low * 2"
    )
    run(defs, instance, start=dt.date(2025, 7, 7), end=dt.date(2025, 7, 11))
    pd.testing.assert_frame_equal(prices(conn), original)
    logged = conn.execute(
        "SELECT symbol, first_changed, factor, rows_replaced FROM restatements ORDER BY 1"
    ).fetchall()
    assert logged == [
        ("AAPL", SUMMER[0], 2.0, len(original) // 2),
        ("GOOGL", SUMMER[0], 2.0, len(original) // 2),
    ]


def write_csv(directory: Path, symbol: str, rows: list[str]) -> None:
    directory.mkdir(exist_ok=True)
    (directory / f"{symbol}.csv").write_text(
        "Date,Open,High,Low,Close,Volume\n" + "\n".join(rows) + "\n"
    )


JULY_FIRST_WEEK = [
    "2025-07-01,10,11,9,10.5,1000",
    "2025-07-02,10.5,11,10,10.8,1100",
    "2025-07-03,10.8,11.2,10.1,11,1200",
    "2025-07-07,11,11.5,10.9,11.1,1300",
]


def valid_through(conn, target: str) -> dict[str, dt.date]:
    rows = conn.execute(
        "SELECT symbol, valid_through FROM watermarks WHERE target = %s", [target]
    ).fetchall()
    return dict(rows)


def test_bad_csv_rows_are_quarantined_and_a_hole_stops_only_its_symbol(
    make_defs, instance, conn, tmp_path
):
    csv_dir = tmp_path / "csv"
    write_csv(csv_dir, "AAPL", JULY_FIRST_WEEK)
    write_csv(
        csv_dir,
        "MSFT",
        [
            *JULY_FIRST_WEEK[:2],
            "2025-07-03,10.8,11.2,10.1,-11,1200",
            "2025-07-05,1,1,1,1,1",
            JULY_FIRST_WEEK[3],
        ],
    )
    defs = make_defs(
        MARKETPULSE_SOURCE="csv", MARKETPULSE_CSV_DIR=str(csv_dir), MARKETPULSE_SYMBOLS="AAPL,MSFT"
    )
    [outcome, _quality] = run(
        defs, instance, symbols=["AAPL", "MSFT"], start=dt.date(2025, 7, 1), end=dt.date(2025, 7, 7)
    )

    assert (
        "check every_session_has_a_bar on stock_prices [AAPL..MSFT]: MSFT has no bar for"
        " 2025-07-03" in outcome.failures
    )
    # MSFT's computed assets stop before its hole; AAPL goes on.
    assert valid_through(conn, "price_features") == {
        "AAPL": dt.date(2025, 7, 7),
        "MSFT": dt.date(2025, 7, 2),
    }
    assert valid_through(conn, "anomaly_consensus") == valid_through(conn, "price_features")
    stored = prices(conn)
    rejected = conn.execute(
        'SELECT symbol, "timestamp", close, source_ref, reason, run_id FROM rejected_prices'
        " ORDER BY 2"
    ).fetchall()
    assert len(stored) + len(rejected) == 4 + 5  # rows in = stored + rejected
    assert [(r[0], r[1], r[2], r[3]) for r in rejected] == [
        ("MSFT", dt.date(2025, 7, 3), "-11", "MSFT.csv:4"),
        ("MSFT", dt.date(2025, 7, 5), "1", "MSFT.csv:5"),
    ]
    assert "close must be > 0" in rejected[0][4] and rejected[1][4] == "not an NYSE session"
    assert {r[5] for r in rejected} == {outcome.run_id}

    checks = check_results(instance, outcome.run_id)
    gap = checks["every_session_has_a_bar"]
    assert not gap.passed and gap.metadata["sessions_missing"].value == 1
    assert gap.metadata["symbols_over_tolerance"].value == "MSFT"
    assert "2025-07-03" in gap.metadata["sample"].value
    warning = checks["no_rejected_rows"]
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
    assert (
        warning.metadata["rows_rejected"].value == 2
        and "MSFT.csv:4" in warning.metadata["sample"].value
    )


def test_gap_tolerance_is_configurable(make_defs, instance, conn, tmp_path, monkeypatch):
    csv_dir = tmp_path / "csv"
    write_csv(csv_dir, "AAPL", [JULY_FIRST_WEEK[0], *JULY_FIRST_WEEK[2:]])
    settings = {"MARKETPULSE_SOURCE": "csv", "MARKETPULSE_CSV_DIR": str(csv_dir)}

    def features_through(tolerance: int) -> dt.date:
        monkeypatch.setenv("MARKETPULSE_MAX_MISSING_SESSIONS", str(tolerance))
        defs = make_defs(**settings, MARKETPULSE_SYMBOLS="AAPL")
        run(defs, instance, symbols=["AAPL"], start=dt.date(2025, 7, 1), end=dt.date(2025, 7, 7))
        return valid_through(conn, "price_features")["AAPL"]

    assert features_through(0) == dt.date(2025, 7, 1)  # stops before the missing 2025-07-02
    assert features_through(1) == dt.date(2025, 7, 7)  # tolerated: it carries on


def test_a_missing_csv_file_fails_only_its_symbol_naming_the_file(
    make_defs, instance, conn, tmp_path
):
    csv_dir = tmp_path / "csv"
    write_csv(csv_dir, "AAPL", JULY_FIRST_WEEK)
    defs = make_defs(
        MARKETPULSE_SOURCE="csv", MARKETPULSE_CSV_DIR=str(csv_dir), MARKETPULSE_SYMBOLS="AAPL,MSFT"
    )
    [outcome, _quality] = run(
        defs, instance, symbols=["AAPL", "MSFT"], start=dt.date(2025, 7, 1), end=dt.date(2025, 7, 7)
    )
    assert outcome.failures == [
        f"check every_symbol_loaded on stock_prices [AAPL..MSFT]: {csv_dir / 'MSFT.csv'}:"
        " no price file for MSFT"
    ]
    assert set(prices(conn)["symbol"]) == {"AAPL"}  # AAPL went on, through the whole graph
    assert valid_through(conn, "anomaly_consensus") == {"AAPL": dt.date(2025, 7, 7)}
    status = dict(
        conn.execute(
            "SELECT symbol, message FROM asset_status WHERE asset = 'stock_prices'"
        ).fetchall()
    )
    assert status["AAPL"] is None and "no price file for MSFT" in status["MSFT"]


def test_demo_twice_leaves_the_same_rows(env, conn, capsys):
    assert main(["demo", "--days", "20"]) == 0
    first = prices(conn)
    assert main(["demo", "--days", "20"]) == 0
    assert len(first) == 9 * 20
    pd.testing.assert_frame_equal(prices(conn), first)
    output = capsys.readouterr().out
    assert "rejected rows: 0" in output and "AAPL" in output


def test_cli_reports_bad_arguments_without_a_traceback(env, capsys):
    assert main(["backfill", "--start", "2025-07-10", "--end", "2025-07-01"]) == 2
    assert "window start 2025-07-10 is after its end 2025-07-01" in capsys.readouterr().err
    assert main(["backfill", "--start", "2025-07-01", "--symbols", "NOPE"]) == 2
    assert "not in the watchlist: NOPE" in capsys.readouterr().err
    assert main(["backfill", "--start", "July"]) == 2
    assert "is not a date" in capsys.readouterr().err


def test_a_watchlist_without_its_benchmark_runs_and_says_so(make_defs, instance, conn):
    defs = make_defs(MARKETPULSE_START_DATE="2024-06-03")
    run(defs, instance, as_of=dt.date(2025, 7, 31))  # AAPL and GOOGL: SPY is not loaded
    event = instance.get_latest_materialization_event(dg.AssetKey("anomalies_market_relative"))
    benchmarks = event.asset_materialization.metadata["benchmarks"].value
    assert benchmarks == "SPY (no prices: nothing scored against it)"
    count = "SELECT count(*) FROM anomalies WHERE method = 'market_relative'"
    assert conn.execute(count).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM anomaly_consensus").fetchone()[0] > 0

    run(defs, instance, symbols=("AAPL", "GOOGL", "SPY"), as_of=dt.date(2025, 7, 31))
    event = instance.get_latest_materialization_event(dg.AssetKey("anomalies_market_relative"))
    assert event.asset_materialization.metadata["benchmarks"].value == "SPY"


def test_each_partition_shows_its_own_numbers_and_run_totals_say_so(make_defs, instance, conn):
    run(make_defs(), instance, start=SUMMER[0], end=SUMMER[1])
    stored = dict(conn.execute("SELECT symbol, count(*) FROM stock_prices GROUP BY 1").fetchall())
    for asset, own in (("stock_prices", "rows_stored"), ("anomalies_zscore", "anomalies_found")):
        for symbol in ("AAPL", "GOOGL"):
            [record] = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[symbol]),
                limit=1,
            ).records
            metadata = record.asset_materialization.metadata
            assert own in metadata and f"run_{own}" in metadata
            if asset == "stock_prices":
                assert metadata["rows_stored"].value == stored[symbol]
                assert metadata["dagster/row_count"].value == stored[symbol]
                assert metadata["run_rows_stored"].value == sum(stored.values())
            # every other number is the run's, and named so
            shared = {k for k in metadata if not k.startswith("run_")}
            assert shared <= {
                own,
                "dagster/row_count",
                "window",
                "source",
                "rows_rejected",
                "sessions_missing",
                "splits",
                "dividends",
            }, shared

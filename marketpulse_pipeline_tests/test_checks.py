"""The warnings beyond the price gate, on a real database: a method's flag rate against its
last year, the alert rate against its budget, freshness after the close by the calendar."""

import datetime as dt

import dagster as dg
import pandas as pd

from marketpulse_pipeline.assets.checks import alert_rate_check, flag_rate_check
from marketpulse_pipeline.calendar import SessionWindow, session_offset, sessions_between
from marketpulse_pipeline_tests.test_notifications import add_alert

START = dt.date(2025, 1, 2)
WINDOW = SessionWindow(session_offset(START, 252), session_offset(START, 271))  # 20 sessions


def load(conn, days) -> None:
    conn.cursor().executemany(
        'INSERT INTO stock_prices (symbol, "timestamp", open, high, low, close, volume, source)'
        " VALUES ('AAPL', %s, 100, 101, 99, 100, 1e6, 'test')",
        [(d.date(),) for d in days],
    )


def flags(days) -> pd.DataFrame:
    return pd.DataFrame({"symbol": "AAPL", "timestamp": pd.to_datetime(list(days))})


def test_a_method_flagging_far_more_than_its_last_year_warns(conn):
    year = sessions_between(START, session_offset(START, 251))
    load(conn, [*year, *sessions_between(WINDOW.start, WINDOW.end)])
    conn.cursor().executemany(  # 5 flagged days in the previous year: a 2 % rate
        'INSERT INTO anomalies (id, symbol, "timestamp", anomaly_type, method, score, severity,'
        " details) VALUES (%s, 'AAPL', %s, 'price_spike', 'zscore', 3, 1.2, '{}')",
        [(i, d.date()) for i, d in enumerate(year[::50])],
    )
    window_days = sessions_between(WINDOW.start, WINDOW.end)
    scored = pd.Series({"AAPL": len(window_days)})
    calm = flag_rate_check(conn, "zscore", {"AAPL": WINDOW}, flags(window_days[:4]), scored)
    assert calm.passed
    noisy = flag_rate_check(conn, "zscore", {"AAPL": WINDOW}, flags(window_days[:8]), scored)
    assert not noisy.passed
    assert noisy.metadata["summary"].text == "AAPL: 8 days flagged, its last year explains 4"
    fresh = flag_rate_check(
        conn, "iqr", {"AAPL": SessionWindow(START, WINDOW.end)}, flags(year), scored
    )
    assert fresh.passed  # no year before it to judge against


def test_a_symbol_alerting_beyond_its_budget_warns(conn):
    days = sessions_between(START, session_offset(START, 99))
    for i, day in enumerate(days):
        add_alert(conn, "AAPL", day.date(), 0.0004, is_alert=i % 20 == 0)  # 5 in 100
    assert alert_rate_check(conn, ["AAPL"], budget=0.01).passed  # 1 expected, 5 allowed
    strict = alert_rate_check(conn, ["AAPL"], budget=0.001)
    assert not strict.passed  # 0.1 expected: 3 allowed
    assert strict.metadata["summary"].text == "AAPL: 5 alerts in 100 sessions (budget 0.001)"


def test_freshness_turns_red_when_the_evening_run_did_not_happen(make_defs, instance):
    from marketpulse_pipeline.assets.checks import FRESHNESS_JOB
    from marketpulse_pipeline.runner import run_pipeline

    defs = make_defs(MARKETPULSE_START_DATE="2025-12-01", MARKETPULSE_SYMBOLS="AAPL,GOOGL")
    # the clock: 2025-12-31, 23:00 UTC

    def freshness() -> dg.AssetCheckEvaluation:
        result = defs.resolve_job_def(FRESHNESS_JOB).execute_in_process(instance=instance)
        [evaluation] = result.get_asset_check_evaluations()
        return evaluation

    quiet = lambda _: None  # noqa: E731
    run_pipeline(defs, instance, ["AAPL", "GOOGL"], as_of=dt.date(2025, 12, 29), progress=quiet)
    stale = freshness()
    assert not stale.passed
    assert stale.metadata["summary"].text == (
        "2 behind 2025-12-30: AAPL (2025-12-29), GOOGL (2025-12-29)"
    )
    run_pipeline(defs, instance, ["AAPL", "GOOGL"], progress=quiet)  # the evening run
    assert freshness().passed  # the 31st closed 2 h ago: within the 3 h grace, not due yet

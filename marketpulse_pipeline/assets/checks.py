"""Checks beyond the price gate: is every symbol fresh after the close, does the alert flag keep
to its budget, does the detection quality hold. They warn; the data assets stay green."""

from collections.abc import Sequence

import dagster as dg
import numpy as np
import pandas as pd
import psycopg

from marketpulse_pipeline.resources import ClockResource, PostgresResource
from marketpulse_pipeline.storage.queries import alert_rates, flag_history, pipeline_health

FRESHNESS_JOB = "check_freshness"
ALERT_RATE_SESSIONS = 252


def build_freshness_check(symbols: Sequence[str]) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset="stock_prices",
        name="fresh_after_the_close",
        description=(
            "Every symbol holds the latest NYSE session whose close is three hours past (the"
            " exchange's calendar: weekends, holidays and early closes included). Evaluated by"
            " the check_freshness schedule, so it turns red when the evening run did not happen."
        ),
    )
    def fresh_after_the_close(
        database: PostgresResource, clock: ClockResource
    ) -> dg.AssetCheckResult:
        with database.connect() as conn:
            health = pipeline_health(conn, list(symbols), clock.moment())
        expected = health["expected_session"].max()
        through = health.set_index("symbol")["prices_through"]
        stale = sorted(s for s, day in through.items() if pd.isna(day) or day < expected)
        summary = (
            f"every symbol has {expected}"
            if not stale
            else f"{len(stale)} behind {expected}: "
            + ", ".join(f"{s} ({through[s] or 'none'})" for s in stale)
        )
        return dg.AssetCheckResult(
            passed=not stale,
            metadata={"summary": summary, "expected_session": str(expected)},
        )

    return fresh_after_the_close


def build_freshness_schedule(check: dg.AssetChecksDefinition) -> dg.ScheduleDefinition:
    job = dg.define_asset_job(
        FRESHNESS_JOB,
        selection=dg.AssetSelection.checks(check),
        description="Whether the after-the-close run happened: the freshness check alone.",
    )
    return dg.ScheduleDefinition(
        name="freshness_after_the_close",
        job=job,
        cron_schedule="30 21 * * *",
        execution_timezone="America/New_York",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="21:30 New York, every day: three hours after the evening run's slot.",
    )


def alert_rate_check(
    conn: psycopg.Connection, symbols: Sequence[str], budget: float
) -> dg.AssetCheckResult:
    """Per symbol, the alerts of its last year of scored sessions against what the budget
    explains (budget * sessions, plus three standard deviations of chance, plus two)."""
    rates = alert_rates(conn, list(symbols), ALERT_RATE_SESSIONS)
    expected = budget * rates["scored"]
    allowed = np.floor(expected + 3 * np.sqrt(expected) + 2)
    over = rates[rates["alerts"] > allowed]
    summary = (
        "every symbol within its budget"
        if over.empty
        else "; ".join(
            f"{r.symbol}: {r.alerts} alerts in {r.scored} sessions" for r in over.itertuples()
        )
        + f" (budget {budget:g})"
    )
    return dg.AssetCheckResult(
        check_name="alert_rate_within_budget",
        passed=over.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"summary": summary, "symbols_over": len(over)},
    )


FLAG_HISTORY_SESSIONS = 252


def flag_rate_check(
    conn: psycopg.Connection, method: str, windows: dict, found: pd.DataFrame, scored: pd.Series
) -> dg.AssetCheckResult:
    """Per symbol, the days the method flagged in the run's window against what its previous
    year's flag rate explains (that rate times the window's sessions, plus three standard
    deviations of chance, plus two): a method gone noisy, or a market that changed."""
    history = flag_history(conn, method, windows, FLAG_HISTORY_SESSIONS).set_index("symbol")
    flagged = found.groupby("symbol")["timestamp"].nunique()
    lines = []
    for symbol, row in history.iterrows():
        if row["sessions"] < 60:  # too little history to judge
            continue
        expected = row["flagged"] / row["sessions"] * int(scored.get(symbol, 0))
        allowed = np.floor(expected + 3 * np.sqrt(expected) + 2)
        now = int(flagged.get(symbol, 0))
        if now > allowed:
            lines.append(f"{symbol}: {now} days flagged, its last year explains {allowed:.0f}")
    return dg.AssetCheckResult(
        check_name="flag_rate_in_line",
        passed=not lines,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"summary": "; ".join(lines) or "every symbol in line with its last year"},
    )

"""Checks beyond the price gate: is every symbol fresh after the close, does the alert flag keep
to its budget, does the detection quality hold. They warn; the data assets stay green."""

from collections.abc import Sequence

import dagster as dg
import numpy as np
import pandas as pd
import psycopg

from marketpulse_pipeline.resources import ClockResource, PostgresResource
from marketpulse_pipeline.storage.queries import alert_rates, pipeline_health

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

"""When MarketPulse runs: every NYSE session after the close, for the whole watchlist in one run."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from marketpulse_pipeline.calendar import MARKET_TIMEZONE, closure_reason, is_session

CODE_LOCATION = "marketpulse"
"""The code location's name (workspace.yaml, [tool.dagster]): runs the CLI launches carry it, so
the UI lists them under their job, as it lists the runs it launches itself."""
DAILY_JOB = "marketpulse_daily"
AFTER_RUN_JOB = "after_the_run"
WHOLE_WATCHLIST = dg.AssetSelection.assets("detection_quality", "alert_notifications")
"""Assets over every symbol at once (not partitioned): they follow the per-symbol runs."""
FRESHNESS = dg.AssetSelection.checks(
    dg.AssetCheckKey(dg.AssetKey("stock_prices"), "fresh_after_the_close")
)
"""Judged on its own schedule: after a backfill of an old window it would only say "behind"."""


def build_daily_job() -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        DAILY_JOB,
        selection=dg.AssetSelection.all() - WHOLE_WATCHLIST - FRESHNESS,
        description="Every symbol-partitioned asset for a window of sessions (default: catch up).",
    )


def build_after_run_job() -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        AFTER_RUN_JOB,
        selection=WHOLE_WATCHLIST,
        description="Score the detectors against ground truth and send the new alerts.",
    )


def build_automation_sensor() -> dg.AutomationConditionSensorDefinition:
    """Materializes `detection_quality` after the detectors update; on whenever the daemon is."""
    return dg.AutomationConditionSensorDefinition(
        "default_automation_condition_sensor",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "After the symbols' assets update (the evening run, a backfill from the UI), launches"
            " the whole-watchlist assets once: detection_quality scores the detectors and"
            " alert_notifications sends the new alerts."
        ),
    )


def watchlist_run_request(partitions: dg.StaticPartitionsDefinition, day: dt.date) -> dg.RunRequest:
    """One run over every symbol through `day`: a partition range, not one run per symbol."""
    keys = partitions.get_partition_keys()
    return dg.RunRequest(
        run_key=day.isoformat(),
        run_config={"resources": {"window": {"config": {"as_of": day.isoformat()}}}},
        tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
            "marketpulse/session": day.isoformat(),
        },
    )


def build_daily_schedule(
    job: dg.UnresolvedAssetJobDefinition, partitions: dg.StaticPartitionsDefinition
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="after_the_close",
        job=job,
        cron_schedule="30 18 * * 1-5",
        execution_timezone=MARKET_TIMEZONE,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="18:30 New York time on NYSE sessions: process the day for every symbol.",
    )
    def after_the_close(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        day: dt.date = context.scheduled_execution_time.date()
        if not is_session(day):
            return dg.SkipReason(f"{day} is not an NYSE session ({closure_reason(day)})")
        return watchlist_run_request(partitions, day)

    return after_the_close

"""The Dagster code location: the only place Dagster objects are assembled."""

from __future__ import annotations

import warnings

import dagster as dg

from marketpulse_pipeline.assets.alerts import build_alerts_asset
from marketpulse_pipeline.assets.anomalies import build_anomaly_assets
from marketpulse_pipeline.assets.checks import build_freshness_check, build_freshness_schedule
from marketpulse_pipeline.assets.consensus import build_consensus_asset
from marketpulse_pipeline.assets.features import build_features_asset
from marketpulse_pipeline.assets.notifications import (
    build_failure_sensor,
    build_notifications_asset,
)
from marketpulse_pipeline.assets.prices import build_price_assets
from marketpulse_pipeline.assets.quality import build_quality_asset
from marketpulse_pipeline.automation import (
    build_after_run_job,
    build_automation_sensor,
    build_daily_job,
    build_daily_schedule,
)
from marketpulse_pipeline.resources import build_resources
from marketpulse_pipeline.settings import Settings

# Single-run backfills (BackfillPolicy) are deliberate here, though Dagster 1.13 labels them beta.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything for one watchlist: the symbols are the partitions of every asset."""
    symbols = dg.StaticPartitionsDefinition(list(settings.symbols))
    daily_job = build_daily_job()
    freshness = build_freshness_check(settings.symbols)
    return dg.Definitions(
        assets=[
            build_price_assets(symbols),
            build_features_asset(symbols),
            *build_anomaly_assets(symbols),
            build_consensus_asset(symbols),
            build_alerts_asset(symbols),
            build_quality_asset(settings.symbols),
            build_notifications_asset(),
        ],
        jobs=[daily_job, build_after_run_job()],
        asset_checks=[freshness],
        schedules=[build_daily_schedule(daily_job, symbols), build_freshness_schedule(freshness)],
        sensors=[build_automation_sensor(), build_failure_sensor()],
        resources=build_resources(settings),
        # One process per run: the run's lock on its symbols (see PostgresResource) lives in it,
        # and the steps are too short to gain from a process each.
        executor=dg.in_process_executor,
    )


defs = build_definitions(Settings.from_env())

"""`alert_notifications`: the alerts reach people, once — and a failed run is heard of too.

The delivery itself is `marketpulse_pipeline.delivery`; this asset runs one evaluation after the
alert layer updates and shows what it did (sent, suppressed by quiet mode, snooze or threshold,
failed, given up). A channel that fails never fails the asset: the delivery is marked failed
and retried on a later evaluation.
"""

import dagster as dg

from marketpulse_pipeline.assets.metadata import KINDS, OWNERS
from marketpulse_pipeline.delivery.messages import failure_message
from marketpulse_pipeline.detectors.base import stable_id
from marketpulse_pipeline.resources import ClockResource, NotifierResource, PostgresResource


def build_notifications_asset() -> dg.AssetsDefinition:
    @dg.asset(
        name="alert_notifications",
        deps=["alerts"],
        description=(
            "Sends each new alert to the configured channels (Slack, webhook, email) once:"
            " per alert or as a daily digest, within each channel's threshold, a per-symbol"
            " snooze and quiet mode for backfills. Table alert_deliveries records every"
            " decision and attempt."
        ),
        group_name="delivery",
        kinds=KINDS,
        owners=OWNERS,
        automation_condition=dg.AutomationCondition.eager().without(
            ~dg.AutomationCondition.any_deps_missing()
        ),
    )
    def alert_notifications(
        database: PostgresResource, notifier: NotifierResource, clock: ClockResource
    ) -> dg.MaterializeResult:
        with database.connect() as conn:
            report = notifier.build(conn, clock.moment()).deliver_alerts(clock.latest())
        channels = ", ".join(notifier.settings().channels) or "none configured"
        return dg.MaterializeResult(metadata={"channels": channels, **report.metadata()})

    return alert_notifications


def build_failure_sensor() -> dg.RunStatusSensorDefinition:
    """A failed run reaches the same channels once: which run, which step, which symbols, why."""

    @dg.run_failure_sensor(
        name="notify_run_failures",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Sends each failed run (step, symbols, cause in a line) to the channels once.",
    )
    def notify_run_failures(
        context: dg.RunFailureSensorContext,
        database: PostgresResource,
        notifier: NotifierResource,
        clock: ClockResource,
    ) -> None:
        run = context.dagster_run
        steps = [event.step_key for event in context.get_step_failure_events()]
        tags = run.tags
        first, last = (tags.get(f"dagster/asset_partition_range_{e}") for e in ("start", "end"))
        symbols = tags.get("dagster/partition") or (f"{first}..{last}" if first else None)
        cause = _cause(context)
        settings = notifier.settings()
        step = ", ".join(dict.fromkeys(s for s in steps if s)) or None
        message = failure_message(run.run_id, run.job_name, step, symbols, cause, settings)
        with database.connect() as conn:
            notifier.build(conn, clock.moment()).deliver_once(stable_id("run", run.run_id), message)

    return notify_run_failures


def _cause(context: dg.RunFailureSensorContext) -> str:
    """The root cause in one line: the failed step's error, else the run's failure message."""
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error
        while error and error.cause:
            error = error.cause
        if error:
            return " ".join(error.message.split())[:300]  # "ValueError: ..." already
    text = context.failure_event.message if context.failure_event else ""
    return " ".join((text or "unknown").split())[:300]

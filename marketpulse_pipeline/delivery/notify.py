"""One evaluation of the notifier: plan what each channel gets, take back what is no longer an
alert, then claim, send and settle — a delivery that fails is retried with backoff on a later
evaluation and given up after `max_attempts`, visibly; it never fails the caller."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import psycopg

from marketpulse_pipeline.delivery.channels import Channel, DeliveryError
from marketpulse_pipeline.delivery.config import NotificationSettings
from marketpulse_pipeline.delivery.messages import (
    Message,
    alert_message,
    as_record,
    digest_message,
    from_record,
)
from marketpulse_pipeline.delivery.policy import backoff_seconds, plan_deliveries
from marketpulse_pipeline.detectors.base import stable_id
from marketpulse_pipeline.storage import deliveries
from marketpulse_pipeline.storage.queries import pipeline_health

Chart = Callable[[str], bytes | None]
"""A symbol's chart as PNG (email shows it), or None."""


@dataclass
class Report:
    """What an evaluation did, for the asset's metadata and the CLI."""

    sent: int = 0
    failed: int = 0
    gave_up: int = 0
    withdrawn: int = 0
    suppressed: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, int | str]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "gave_up": self.gave_up,
            "withdrawn": self.withdrawn,
            "suppressed_quiet": self.suppressed["quiet"],
            "suppressed_snooze": self.suppressed["snoozed"],
            "suppressed_threshold": self.suppressed["p_value"],
            "errors": "; ".join(self.errors) or "none",
        }


@dataclass(frozen=True)
class Notifier:
    conn: psycopg.Connection
    settings: NotificationSettings
    channels: Sequence[Channel]
    now: dt.datetime
    chart: Chart | None = None

    def deliver_alerts(self, latest: dt.date) -> Report:
        """Plan and send the alerts (per alert, or in the session's digest)."""
        report = Report()
        if not self.channels:
            return report
        alerts = deliveries.current_alerts(self.conn)
        known = deliveries.known_deliveries(self.conn)
        names = [channel.name for channel in self.channels]
        plan = plan_deliveries(alerts, known, self.settings, latest, names)
        with self.conn.transaction():
            deliveries.record_plan(self.conn, plan)
            report.withdrawn = deliveries.withdraw_gone(self.conn)
        for reason in plan["reason"].dropna():
            report.suppressed[reason.split(":")[0].split(" ")[0]] += 1
        by_id = {int(row["id"]): row for row in alerts.to_dict("records")}
        for channel in self.channels:
            if self.settings.rules_for(channel.name).mode == "digest":
                self._digest(channel, latest, by_id, report)
            else:
                self._each(channel, by_id, report)
            self._retry(channel, report)
        return report

    def deliver_once(self, key: int, message: Message) -> Report:
        """A message that is not an alert (a run failure): once per key and channel."""
        report = Report()
        for channel in self.channels:
            with self.conn.transaction():
                deliveries.add_delivery(
                    self.conn, key, channel.name, message.kind, as_record(message)
                )
            claimed = deliveries.claim(self.conn, channel.name, [message.kind], self.now, [key])
            for row in claimed.itertuples(index=False):
                self._send(channel, message, [row.alert_id], row.attempts, report)
        return report

    def _due(self, channel: Channel, kind: str) -> Iterator:
        """The deliveries of `kind` due now, each claimed just before it is sent (and tried
        once per evaluation); one another evaluation claimed first is skipped."""
        for key in deliveries.due(self.conn, channel.name, kind, self.now):
            claimed = deliveries.claim(self.conn, channel.name, [kind], self.now, [key])
            yield from claimed.itertuples(index=False)

    def _each(self, channel: Channel, by_id: dict, report: Report) -> None:
        for row in self._due(channel, "alert"):
            alert = by_id.get(int(row.alert_id))
            if alert is None:  # taken back between the plan and the claim
                deliveries.settle(
                    self.conn, [row.alert_id], channel.name, self.now, {}, "no longer an alert"
                )
                report.gave_up += 1
                continue
            message = alert_message(alert, self.settings)
            self._send(channel, message, [row.alert_id], row.attempts, report)

    def _digest(self, channel: Channel, latest: dt.date, by_id: dict, report: Report) -> None:
        """One message per session: its alerts, the stale symbols and the failed runs."""
        key = stable_id("digest", latest.isoformat())
        with self.conn.transaction():
            deliveries.add_delivery(self.conn, key, channel.name, "digest", {}, latest)
        digests = deliveries.claim(self.conn, channel.name, ["digest"], self.now)
        if digests.empty:
            return  # this session's digest went out: new alerts wait for the next one
        alerts = deliveries.claim(self.conn, channel.name, ["alert"], self.now)
        rows = [by_id[int(a)] for a in alerts["alert_id"] if int(a) in by_id]
        health = pipeline_health(self.conn, now=self.now)
        stale = sorted(health.loc[~health["ok"], "symbol"])
        failures = sorted(
            f"{r.symbol}: {r.last_failure}" for r in health.itertuples() if r.last_failure
        )
        message = digest_message(latest, rows, stale, failures, self.settings)
        keys = [*digests["alert_id"], *alerts["alert_id"]]
        self._send(channel, message, keys, int(digests["attempts"].max()), report)

    def _retry(self, channel: Channel, report: Report) -> None:
        """Run-failure messages that failed before and are due again."""
        for row in self._due(channel, "run_failure"):
            self._send(channel, from_record(row.message), [row.alert_id], row.attempts, report)

    def _charts(self, symbols: Sequence[str]) -> dict[str, bytes]:
        """Each symbol's chart; a chart that cannot be drawn is left out, never the message."""
        charts = {}
        for symbol in symbols:
            try:
                png = self.chart(symbol) if self.chart else None
            except Exception:  # a picture is a bonus: the alert goes out anyway
                png = None
            if png:
                charts[symbol] = png
        return charts

    def _send(
        self, channel: Channel, message: Message, keys: list, attempts: int, report: Report
    ) -> None:
        if channel.name == "email" and self.chart and message.symbols:
            message = dataclasses.replace(message, charts=self._charts(message.symbols))
        record = as_record(message)
        try:
            note = channel.send(message, key=f"{keys[0]}-{channel.name}")
        except Exception as error:  # a delivery that fails never fails the caller
            # only a DeliveryError's text is known to hold no secret
            text = str(error) if isinstance(error, DeliveryError) else type(error).__name__
            retry_at = None
            if attempts < self.settings.max_attempts:
                retry_at = self.now + dt.timedelta(seconds=backoff_seconds(attempts, self.settings))
            deliveries.settle(self.conn, keys, channel.name, self.now, record, text, retry_at)
            report.errors.append(text)
            if retry_at:
                report.failed += 1
            else:
                report.gave_up += 1
            return
        deliveries.settle(self.conn, keys, channel.name, self.now, record, note, sent=True)
        if note:
            report.errors.append(f"{channel.name}: {note}")
        report.sent += 1

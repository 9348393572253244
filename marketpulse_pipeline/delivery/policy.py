"""Which alerts each channel gets: pure rules over the alerts and what was already delivered.

For each (alert, channel) not yet in the ledger, in session order per symbol:
- quiet mode: a session older than the latest `recent_sessions` is history, not news (a backfill
  never floods a channel);
- the channel's threshold: a combined probability above its `max_p_value` is not for it;
- snooze: within `snooze_sessions` sessions of an alert of the same symbol that went (or is
  going) out on the channel, only a stronger one (smaller probability) goes too.
Anything else is `pending`: the sender's to deliver. Every decision is a row with its reason,
so "why did I not hear about this?" has an answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd

from marketpulse_pipeline.calendar import nyse, session_offset
from marketpulse_pipeline.delivery.config import NotificationSettings

NOTIFIED = ("pending", "sending", "sent", "failed")
"""Statuses of a delivery that went, or is still going, out: they start a snooze."""
PLAN_COLUMNS = ["alert_id", "channel", "symbol", "timestamp", "p_value", "status", "reason"]


def plan_deliveries(
    alerts: pd.DataFrame,
    known: pd.DataFrame,
    settings: NotificationSettings,
    latest: dt.date,
    channels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """New ledger rows (PLAN_COLUMNS) for the `alerts` (id, symbol, timestamp, p_value) that
    `known` (alert_id, channel, symbol, timestamp, p_value, status) has no row for."""
    first_recent = pd.Timestamp(session_offset(latest, -(settings.recent_sessions - 1)))
    rows = []
    for channel in channels if channels is not None else settings.channels:
        rules = settings.rules_for(channel)
        mine = known[known["channel"] == channel]
        new = alerts[~alerts["id"].isin(mine["alert_id"])].sort_values(["symbol", "timestamp"])
        going = mine[mine["status"].isin(NOTIFIED)]
        for symbol, candidates in new.groupby("symbol", sort=True):
            out = going[going["symbol"] == symbol][["timestamp", "p_value"]].to_numpy().tolist()
            for alert in candidates.itertuples(index=False):
                status, reason = "pending", None
                if alert.timestamp < first_recent:
                    status = "suppressed"
                    reason = f"quiet: before the latest {settings.recent_sessions} sessions"
                elif alert.p_value > rules.max_p_value:
                    status, reason = "suppressed", f"p_value above {rules.max_p_value:g}"
                else:
                    near = [
                        p
                        for day, p in out
                        if _apart(day, alert.timestamp) <= settings.snooze_sessions
                    ]
                    if near and alert.p_value >= min(near):
                        status = "suppressed"
                        reason = (
                            f"snoozed: {symbol} alerted within {settings.snooze_sessions} sessions"
                        )
                if status == "pending":
                    out.append([alert.timestamp, alert.p_value])
                rows.append(
                    (alert.id, channel, symbol, alert.timestamp, alert.p_value, status, reason)
                )
    return pd.DataFrame(rows, columns=PLAN_COLUMNS).astype(
        {"alert_id": "int64", "timestamp": "datetime64[ns]", "p_value": "float64"}
    )


def _apart(a: pd.Timestamp, b: pd.Timestamp) -> int:
    """How many sessions lie between two sessions (0 for the same one)."""
    sessions = nyse().sessions
    return int(abs(sessions.searchsorted(pd.Timestamp(a)) - sessions.searchsorted(pd.Timestamp(b))))


def backoff_seconds(attempts: int, settings: NotificationSettings) -> float:
    """How long a delivery that failed `attempts` times waits before its next try."""
    return float(settings.retry_seconds * 2 ** max(attempts - 1, 0))

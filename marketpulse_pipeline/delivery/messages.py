"""What a notification says: one `Message` per alert, digest, run failure or test, rendered
from the same facts for every channel — the webhook's versioned JSON (`payload`), and the title,
lines and link that Slack and email show.

Payload schemas are versioned (`marketpulse.alert/v1`, ...; `webhook_payload.schema.json`): a
field is only ever added within a version. Ids are strings: JSON numbers lose 64-bit precision.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from marketpulse_pipeline.alerts.signals import SIGNALS
from marketpulse_pipeline.delivery.config import NotificationSettings


@dataclass(frozen=True)
class Message:
    kind: str  # alert | digest | run_failure | test
    title: str
    lines: tuple[str, ...]
    payload: dict[str, Any]
    link: str | None = None
    symbols: tuple[str, ...] = ()
    """Symbols whose chart belongs with the message (email attaches them)."""
    charts: dict[str, bytes] = field(default_factory=dict)
    """PNG per symbol, filled by the sender when a channel shows pictures."""


def alert_payload(alert: Mapping[str, Any], settings: NotificationSettings) -> dict[str, Any]:
    """The facts of one alert (a row of the `alerts` view with its p_<signal> columns)."""
    p_value = float(alert["p_value"])
    details = alert.get("details") or {}
    if isinstance(details, str):
        details = json.loads(details)
    return {
        "schema": "marketpulse.alert/v1",
        "id": str(int(alert["id"])),
        "symbol": alert["symbol"],
        "session": _day(alert["timestamp"]),
        "p_value": p_value,
        "severity": round(-math.log10(max(p_value, 1e-300)), 2),
        "methods": list(alert.get("methods") or []),
        "probabilities": {s: _number(alert.get(f"p_{s}")) for s in SIGNALS},
        "statistics": {s: _number(v) for s, v in (details.get("statistic") or {}).items()},
        "return_pct": _number(alert.get("return_pct")),
        "market_wide": bool(alert.get("market_wide")),
        "link": asset_link(settings, "alerts", alert["symbol"]),
    }


def alert_message(alert: Mapping[str, Any], settings: NotificationSettings) -> Message:
    payload = alert_payload(alert, settings)
    return Message(
        kind="alert",
        title=_alert_title(payload),
        lines=_alert_lines(payload),
        payload=payload,
        link=payload["link"],
        symbols=(payload["symbol"],),
    )


def digest_message(
    session: dt.date,
    alerts: Sequence[Mapping[str, Any]],
    stale: Sequence[str],
    failures: Sequence[str],
    settings: NotificationSettings,
) -> Message:
    """One message after the close: the session's alerts, stale symbols and failed runs."""
    payloads = [alert_payload(a, settings) for a in alerts]
    lines = [_alert_title(p) for p in payloads] or ["No alerts."]
    if stale:
        lines.append(f"Stale: {', '.join(stale)}")
    lines += [f"Failed: {failure}" for failure in failures]
    return Message(
        kind="digest",
        title=f"MarketPulse {session:%Y-%m-%d}: {_count(len(payloads), 'alert')}",
        lines=tuple(lines),
        payload={
            "schema": "marketpulse.digest/v1",
            "session": session.isoformat(),
            "alerts": payloads,
            "stale_symbols": list(stale),
            "failed_runs": list(failures),
            "link": asset_link(settings, "alerts"),
        },
        link=asset_link(settings, "alerts"),
        symbols=tuple(dict.fromkeys(p["symbol"] for p in payloads)),
    )


def failure_message(
    run_id: str,
    job: str,
    step: str | None,
    symbols: str | None,
    cause: str,
    settings: NotificationSettings,
) -> Message:
    """A pipeline run that failed: which run, which step, which symbols, the cause in a line."""
    link = f"{settings.dagster_url}/runs/{run_id}" if settings.dagster_url else None
    where = " ".join(part for part in (step and f"step {step}", symbols and f"[{symbols}]") if part)
    return Message(
        kind="run_failure",
        title=f"MarketPulse run {run_id[:8]} failed{f' at {where}' if where else ''}",
        lines=(f"Job {job}", f"Cause: {cause}"),
        payload={
            "schema": "marketpulse.run_failure/v1",
            "run_id": run_id,
            "job": job,
            "step": step,
            "symbols": symbols,
            "cause": cause,
            "link": link,
        },
        link=link,
    )


def test_message(settings: NotificationSettings, now: dt.datetime) -> Message:
    return Message(
        kind="test",
        title="MarketPulse test message",
        lines=("This channel is configured and reachable.",),
        payload={"schema": "marketpulse.test/v1", "sent_at": now.isoformat()},
        link=settings.dagster_url,
    )


def asset_link(
    settings: NotificationSettings, asset: str, partition: str | None = None
) -> str | None:
    """The asset's page in the Dagster UI (`MARKETPULSE_DAGSTER_URL`), if there is one."""
    if not settings.dagster_url:
        return None
    query = f"?partition={quote(partition)}" if partition else ""
    return f"{settings.dagster_url}/assets/{asset}{query}"


def _alert_title(payload: Mapping[str, Any]) -> str:
    move = payload["return_pct"]
    moved = f" {move:+.1f} %" if move is not None else ""
    wide = " (market-wide)" if payload["market_wide"] else ""
    return f"{payload['symbol']} {payload['session']}{moved}: p = {payload['p_value']:.2g}{wide}"


def _alert_lines(payload: Mapping[str, Any]) -> tuple[str, ...]:
    named = ", ".join(payload["methods"]) or "no single signal"
    lines = [f"Signals: {named} (severity {payload['severity']:g}: -log10 p)"]
    for signal, p in payload["probabilities"].items():
        if p is not None:
            value = payload["statistics"].get(signal)
            shown = f"{value:.2f}" if value is not None else "-"
            lines.append(f"  {signal}: statistic {shown}, p = {p:.2g}")
    lines.append(f"Alert id {payload['id']} (marketpulse label {payload['id']} --as ...)")
    return tuple(lines)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else round(number, 6)


def _day(value: Any) -> str:
    return value.isoformat()[:10] if hasattr(value, "isoformat") else str(value)[:10]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def as_record(message: Message) -> dict[str, Any]:
    """The message as the ledger keeps it (what was sent; charts are not kept)."""
    return {
        "kind": message.kind,
        "title": message.title,
        "lines": list(message.lines),
        "payload": message.payload,
        "link": message.link,
        "symbols": list(message.symbols),
    }


def from_record(record: Mapping[str, Any]) -> Message:
    return Message(
        kind=record["kind"],
        title=record["title"],
        lines=tuple(record["lines"]),
        payload=dict(record["payload"]),
        link=record.get("link"),
        symbols=tuple(record.get("symbols", ())),
    )

"""Which channels are on and the rules they follow, from `MARKETPULSE_*` variables.

A channel is on when its variable is set; secrets (the Slack URL, the webhook secret, the SMTP
password) come only from the environment and never appear in an error message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

CHANNELS = ("slack", "webhook", "email")
MODES = ("alert", "digest")
_ADDRESS = re.compile(r"^[^@\s,]+@[^@\s,]+$")

Get = Callable[[str], str | None]
PREFIXES = {
    "slack": "MARKETPULSE_SLACK",
    "webhook": "MARKETPULSE_ALERT_WEBHOOK",
    "email": "MARKETPULSE_ALERT_EMAIL",
}
SECRETS = (
    "MARKETPULSE_SLACK_WEBHOOK_URL",
    "MARKETPULSE_ALERT_WEBHOOK_URL",
    "MARKETPULSE_ALERT_WEBHOOK_SECRET",
    "MARKETPULSE_SMTP_URL",
)
VARIABLES = (
    *SECRETS,
    "MARKETPULSE_ALERT_EMAIL_TO",
    "MARKETPULSE_ALERT_EMAIL_FROM",
    "MARKETPULSE_DAGSTER_URL",
    "MARKETPULSE_NOTIFY_MAX_P_VALUE",
    *(f"{prefix}_{what}" for prefix in PREFIXES.values() for what in ("MAX_P_VALUE", "MODE")),
    "MARKETPULSE_NOTIFY_SNOOZE_SESSIONS",
    "MARKETPULSE_NOTIFY_RECENT_SESSIONS",
    "MARKETPULSE_NOTIFY_MAX_ATTEMPTS",
    "MARKETPULSE_NOTIFY_RETRY_SECONDS",
)
"""Every variable the notifier reads (README, Notifications)."""


class NotificationSettingsError(ValueError):
    """A notification variable holds a value MarketPulse cannot use (named, value withheld)."""


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool  # smtps://; smtp:// upgrades with STARTTLS when the server offers it

    def __repr__(self) -> str:  # never the password
        return f"SmtpServer({self.host}:{self.port}, user={self.username!r})"


@dataclass(frozen=True)
class ChannelRules:
    max_p_value: float = 1.0
    """Only alerts at or below this combined probability reach the channel."""
    mode: str = "alert"
    """`alert`: a message per alert; `digest`: one message per session after the close."""


@dataclass(frozen=True)
class NotificationSettings:
    slack_url: str | None = field(default=None, repr=False)
    webhook_url: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    smtp: SmtpServer | None = None
    email_to: tuple[str, ...] = ()
    email_from: str = "marketpulse@localhost"
    dagster_url: str | None = None
    rules: dict[str, ChannelRules] = field(default_factory=dict)
    snooze_sessions: int = 5
    """No second alert for a symbol within this many sessions on a channel, unless stronger."""
    recent_sessions: int = 5
    """Quiet mode: only alerts of the latest this-many sessions notify (a backfill never floods)."""
    max_attempts: int = 5
    retry_seconds: int = 300
    """Backoff: a failed delivery waits retry_seconds * 2^(attempts - 1) before the next try."""
    timeout_seconds: float = 10.0

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels that are on, in a fixed order."""
        on = {"slack": self.slack_url, "webhook": self.webhook_url, "email": self.smtp}
        return tuple(name for name in CHANNELS if on[name])

    def rules_for(self, channel: str) -> ChannelRules:
        return self.rules.get(channel, ChannelRules())


def notification_settings(get: Get) -> NotificationSettings:
    """The notification settings from `get(name)` (None when unset or blank)."""
    smtp = _smtp(get("MARKETPULSE_SMTP_URL"))
    email_to = _addresses(get("MARKETPULSE_ALERT_EMAIL_TO"), "MARKETPULSE_ALERT_EMAIL_TO")
    if smtp and not email_to:
        raise NotificationSettingsError(
            "MARKETPULSE_SMTP_URL is set but MARKETPULSE_ALERT_EMAIL_TO is not: whom to mail?"
        )
    default_max = _probability(
        get("MARKETPULSE_NOTIFY_MAX_P_VALUE"), "MARKETPULSE_NOTIFY_MAX_P_VALUE"
    )
    rules = {}
    for channel, prefix in PREFIXES.items():
        name = f"{prefix}_MAX_P_VALUE"
        mode = (get(f"{prefix}_MODE") or "alert").lower()
        if mode not in MODES:
            raise NotificationSettingsError(f"{prefix}_MODE={mode!r}: use alert or digest")
        rules[channel] = ChannelRules(
            max_p_value=_probability(get(name), name) or default_max or 1.0, mode=mode
        )
    sender = get("MARKETPULSE_ALERT_EMAIL_FROM") or "marketpulse@localhost"
    return NotificationSettings(
        slack_url=_url(get("MARKETPULSE_SLACK_WEBHOOK_URL"), "MARKETPULSE_SLACK_WEBHOOK_URL"),
        webhook_url=_url(get("MARKETPULSE_ALERT_WEBHOOK_URL"), "MARKETPULSE_ALERT_WEBHOOK_URL"),
        webhook_secret=_secret(get("MARKETPULSE_ALERT_WEBHOOK_SECRET")),
        smtp=smtp,
        email_to=email_to,
        email_from=_addresses(sender, "MARKETPULSE_ALERT_EMAIL_FROM")[0],
        dagster_url=_url(get("MARKETPULSE_DAGSTER_URL"), "MARKETPULSE_DAGSTER_URL"),
        rules=rules,
        snooze_sessions=_whole(get, "MARKETPULSE_NOTIFY_SNOOZE_SESSIONS", 5, 0, 1000),
        recent_sessions=_whole(get, "MARKETPULSE_NOTIFY_RECENT_SESSIONS", 5, 1, 1000),
        max_attempts=_whole(get, "MARKETPULSE_NOTIFY_MAX_ATTEMPTS", 5, 1, 100),
        retry_seconds=_whole(get, "MARKETPULSE_NOTIFY_RETRY_SECONDS", 300, 0, 86_400),
    )


def _url(text: str | None, origin: str) -> str | None:
    """An http(s) URL a client can use: a host (IDNA-encodable), a port from 1 to 65535 if
    given, no control characters. The value is not echoed (it may hold a token)."""
    if text is None:
        return None
    try:
        parts = urlsplit(text)
        port = parts.port  # a port that is not a number from 0 to 65535 raises here
        (parts.hostname or "").encode("idna")
        text.encode("utf-8")
    except (ValueError, UnicodeError):
        parts, port = None, None
    usable = (
        parts is not None
        and parts.scheme in ("http", "https")
        and parts.hostname
        and port != 0
        and not any(ord(c) < 32 or ord(c) == 127 for c in text)
    )
    if not usable:
        raise NotificationSettingsError(f"{origin} is not an http(s) URL with a host")
    return text.rstrip("/") if origin == "MARKETPULSE_DAGSTER_URL" else text


def _secret(text: str | None) -> str | None:
    """The HMAC key: it is signed with as UTF-8, so it must be text that encodes."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeError:
        raise NotificationSettingsError(
            "MARKETPULSE_ALERT_WEBHOOK_SECRET is not text (UTF-8): the HMAC key must be"
        ) from None
    return text


def _smtp(text: str | None) -> SmtpServer | None:
    """`smtp://user:pass@host:587` (STARTTLS when offered) or `smtps://...:465` (TLS)."""
    if text is None:
        return None
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname or port in (-1, 0):
        raise NotificationSettingsError(
            "MARKETPULSE_SMTP_URL is not smtp://[user:password@]host[:port] (or smtps://)"
        )
    implicit = parts.scheme == "smtps"
    return SmtpServer(
        host=parts.hostname,
        port=port or (465 if implicit else 587),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        implicit_tls=implicit,
    )


def _addresses(text: str | None, origin: str) -> tuple[str, ...]:
    if text is None:
        return ()
    found = tuple(a.strip() for a in text.split(",") if a.strip())
    bad = [a for a in found if not _ADDRESS.match(a)]
    if bad or not found:
        raise NotificationSettingsError(f"{origin}={text!r} is not a comma-separated address list")
    return found


def _probability(text: str | None, origin: str) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise NotificationSettingsError(f"{origin}={text!r} is not a probability in (0, 1]")
    return value


def _whole(get: Get, name: str, default: int, low: int, high: int) -> int:
    text = get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise NotificationSettingsError(
            f"{name}={text!r} is not a whole number from {low} to {high}"
        )
    return value

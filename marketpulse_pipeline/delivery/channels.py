"""The three protocols: a Slack incoming webhook, a signed generic webhook, and SMTP email.

Each `send` either returns (delivered) or raises `DeliveryError` with one line that never holds
a secret (the Slack URL is a token, the webhook secret, the SMTP password).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

import httpx

from marketpulse_pipeline.delivery.config import NotificationSettings, SmtpServer
from marketpulse_pipeline.delivery.messages import Message

T = TypeVar("T")
USER_AGENT = "marketpulse-notifier/1"
SIGNATURE_HEADER = "X-MarketPulse-Signature"


class DeliveryError(Exception):
    """A channel did not take the message; the text is one line without secrets."""


class Channel(Protocol):
    name: str

    def send(self, message: Message, key: str) -> str | None:
        """Deliver `message` (`key` identifies the delivery: receivers may de-duplicate), or
        raise DeliveryError; a note says what went only partly (a refused recipient)."""


class SlackChannel:
    name = "slack"

    def __init__(self, url: str, timeout: float) -> None:
        self._url, self._timeout = url, timeout

    def send(self, message: Message, key: str) -> str | None:
        body = json.dumps(slack_body(message)).encode()
        return _post(self.name, self._url, body, {}, self._timeout, secrets=[])


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, secret: str | None, timeout: float) -> None:
        self._url, self._secret, self._timeout = url, secret, timeout

    def send(self, message: Message, key: str) -> str | None:
        body = json.dumps(message.payload, sort_keys=True, separators=(",", ":")).encode()
        headers = {"Idempotency-Key": key, "X-MarketPulse-Schema": message.payload["schema"]}
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, body, int(time.time()))
        secrets = [self._secret] if self._secret else []
        return _post(self.name, self._url, body, headers, self._timeout, secrets=secrets)


class EmailChannel:
    name = "email"

    def __init__(
        self, server: SmtpServer, sender: str, to: tuple[str, ...], timeout: float
    ) -> None:
        self._server, self._sender, self._to, self._timeout = server, sender, to, timeout

    def send(self, message: Message, key: str) -> str | None:
        mail = email_body(message, self._sender, self._to, key)
        secrets = [self._server.password] if self._server.password else []
        refused = within(self._timeout, lambda: self._deliver(mail), self.name, secrets)
        return f"refused for {', '.join(sorted(refused))}" if refused else None

    def _deliver(self, mail: EmailMessage) -> dict:
        server = self._server
        if server.implicit_tls:
            context = ssl.create_default_context()
            smtp = smtplib.SMTP_SSL(
                server.host, server.port, timeout=self._timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(server.host, server.port, timeout=self._timeout)
        with smtp:
            smtp.ehlo()
            encrypted = server.implicit_tls
            if not encrypted and smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
                encrypted = True
            if server.username:
                if not encrypted:
                    raise DeliveryError(
                        "email: the server offers no STARTTLS: refusing to send the"
                        " password unencrypted"
                    )
                smtp.login(server.username, server.password or "")
            return smtp.send_message(mail)  # the recipients it refused, if some were taken


def channels_from(settings: NotificationSettings) -> list[Channel]:
    """The configured channels, in a fixed order."""
    found: list[Channel] = []
    if settings.slack_url:
        found.append(SlackChannel(settings.slack_url, settings.timeout_seconds))
    if settings.webhook_url:
        found.append(
            WebhookChannel(settings.webhook_url, settings.webhook_secret, settings.timeout_seconds)
        )
    if settings.smtp:
        found.append(
            EmailChannel(
                settings.smtp, settings.email_from, settings.email_to, settings.timeout_seconds
            )
        )
    return found


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: the receiver recomputes it with
    the shared secret and refuses a stale `t` (a replayed request)."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def slack_body(message: Message) -> dict:
    """Block Kit: a header, the lines as one section, and a button to the Dagster UI."""
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "\n".join(message.lines)[:3000]},
        },
    ]
    if message.link:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in Dagster"},
                        "url": message.link,
                    }
                ],
            }
        )
    return {"text": message.title, "blocks": blocks}


def email_body(message: Message, sender: str, to: tuple[str, ...], key: str) -> EmailMessage:
    """Plain text, and HTML with each symbol's chart inline (also readable without it)."""
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Message-ID"] = f"<{key}@marketpulse>"
    link = [f"\n{message.link}"] if message.link else []
    mail.set_content("\n".join([*message.lines, *link]) + "\n")
    if message.charts:
        images = "".join(
            f'<p><img src="cid:chart-{symbol}" alt="{symbol} chart"></p>'
            for symbol in message.charts
        )
        text = "<br>".join(_html(line) for line in message.lines)
        anchor = (
            f'<p><a href="{_html(message.link)}">Open in Dagster</a></p>' if message.link else ""
        )
        mail.add_alternative(f"<html><body><p>{text}</p>{images}{anchor}</body></html>", "html")
        html = mail.get_payload()[1]
        for symbol, png in message.charts.items():
            html.add_related(png, "image", "png", cid=f"<chart-{symbol}>", filename=f"{symbol}.png")
    return mail


def _post(
    name: str, url: str, body: bytes, headers: dict, timeout: float, secrets: list[str]
) -> None:
    """POST `body`; the receiver's answer is read only up to 4 KB, and the whole exchange
    must end within `timeout` seconds."""
    headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json", **headers}

    def exchange() -> None:
        with httpx.stream("POST", url, content=body, headers=headers, timeout=timeout) as answer:
            if answer.is_success:
                return
            start = next(answer.iter_bytes(4096), b"")[:4096]
            text = " ".join(start.decode("utf-8", "replace").split())[:200]
            raise DeliveryError(f"{name}: HTTP {answer.status_code}: {text}")

    within(timeout, exchange, name, [*secrets, *url_secrets(url)])


def within(timeout: float, work: Callable[[], T], name: str, secrets: list[str]) -> T:
    """`work()` in a thread that must finish within `timeout` seconds: a receiver that trickles
    one byte at a time cannot hold the pipeline. Any failure becomes a DeliveryError whose
    text holds none of `secrets`."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # carried to the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=run, name=f"deliver-{name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise DeliveryError(f"{name}: no answer within {timeout:g} s")
    error = outcome.get("error")
    if isinstance(error, DeliveryError):
        raise DeliveryError(_scrubbed(str(error), secrets)) from None
    if error is not None:
        raise DeliveryError(_scrubbed(f"{name}: {_describe(error)}", secrets)) from None
    return outcome.get("value")  # type: ignore[return-value]


def url_secrets(url: str) -> list[str]:
    """The parts of a URL that may be credentials: the whole, the user and password, the path
    and each longer segment of it, the query and its values (a Slack URL's token is its path)."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if len(s) >= 6]
    values = [v for pair in parts.query.split("&") for v in pair.split("=", 1)[1:] if len(v) >= 4]
    found = [url, parts.path, parts.query, parts.username or "", parts.password or ""]
    return [s for s in (*found, *segments, *values) if s and len(s) >= 4]


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _scrubbed(text: str, secrets: list[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):  # the whole before its parts
        text = text.replace(secret, "***")
    return text


def _html(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )

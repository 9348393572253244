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
import time
from email.message import EmailMessage
from typing import Protocol

import httpx

from marketpulse_pipeline.delivery.config import NotificationSettings, SmtpServer
from marketpulse_pipeline.delivery.messages import Message

USER_AGENT = "marketpulse-notifier/1"
SIGNATURE_HEADER = "X-MarketPulse-Signature"


class DeliveryError(Exception):
    """A channel did not take the message; the text is one line without secrets."""


class Channel(Protocol):
    name: str

    def send(self, message: Message, key: str) -> None:
        """Deliver `message`; `key` identifies the delivery (receivers may de-duplicate)."""


class SlackChannel:
    name = "slack"

    def __init__(self, url: str, timeout: float) -> None:
        self._url, self._timeout = url, timeout

    def send(self, message: Message, key: str) -> None:
        _post(self.name, self._url, slack_body(message), {}, self._timeout, secrets=[self._url])


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, secret: str | None, timeout: float) -> None:
        self._url, self._secret, self._timeout = url, secret, timeout

    def send(self, message: Message, key: str) -> None:
        body = json.dumps(message.payload, sort_keys=True, separators=(",", ":")).encode()
        headers = {"Idempotency-Key": key, "X-MarketPulse-Schema": message.payload["schema"]}
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, body, int(time.time()))
        secrets = [self._url, *([self._secret] if self._secret else [])]
        _post(self.name, self._url, body, headers, self._timeout, secrets=secrets)


class EmailChannel:
    name = "email"

    def __init__(
        self, server: SmtpServer, sender: str, to: tuple[str, ...], timeout: float
    ) -> None:
        self._server, self._sender, self._to, self._timeout = server, sender, to, timeout

    def send(self, message: Message, key: str) -> None:
        mail = email_body(message, self._sender, self._to, key)
        server = self._server
        secrets = [server.password] if server.password else []
        try:
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
                smtp.send_message(mail)
        except DeliveryError:
            raise
        except (OSError, smtplib.SMTPException) as error:
            raise DeliveryError(_scrubbed(f"email: {_describe(error)}", secrets)) from None


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
    name: str, url: str, body: bytes | dict, headers: dict, timeout: float, secrets: list[str]
) -> None:
    content = {"json": body} if isinstance(body, dict) else {"content": body}
    headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json", **headers}
    try:
        response = httpx.post(url, headers=headers, timeout=timeout, **content)
    except httpx.HTTPError as error:
        raise DeliveryError(_scrubbed(f"{name}: {_describe(error)}", secrets)) from None
    if not response.is_success:
        answer = " ".join(response.text.split())[:200]
        raise DeliveryError(_scrubbed(f"{name}: HTTP {response.status_code}: {answer}", secrets))


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _scrubbed(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _html(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )

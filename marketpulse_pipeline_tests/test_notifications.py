"""Notifications against real local servers: an HTTP server records the Slack and webhook
POSTs, an SMTP server (aiosmtpd) the emails — on 127.0.0.1, nothing patched."""

import dataclasses
import datetime as dt
import email
import hashlib
import hmac
import json
import socket
import threading
from email import policy as email_policy
from pathlib import Path

import dagster as dg
import jsonschema
import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from hypothesis import given, settings
from hypothesis import strategies as st

from marketpulse_pipeline.calendar import session_offset, sessions_between
from marketpulse_pipeline.cli import main
from marketpulse_pipeline.delivery.channels import channels_from
from marketpulse_pipeline.delivery.config import NotificationSettings, notification_settings
from marketpulse_pipeline.delivery.messages import failure_message
from marketpulse_pipeline.delivery.notify import Notifier
from marketpulse_pipeline.delivery.policy import NOTIFIED, plan_deliveries
from marketpulse_pipeline.detectors.base import anomaly_id, stable_id
from marketpulse_pipeline.settings import Settings, SettingsError

LATEST = dt.date(2025, 12, 31)
NOW = dt.datetime(2025, 12, 31, 23, 30, tzinfo=dt.UTC)
SECRET = "s3cret-hmac-key"
SCHEMA = Path(__file__).parents[1] / "marketpulse_pipeline/delivery/webhook_payload.schema.json"


class Mailbox:
    """An aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email_policy.default)
        )
        return "250 OK"


@pytest.fixture
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=_free_port())
    controller.start()
    box.url = f"smtp://127.0.0.1:{controller.port}"
    yield box
    controller.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def configured(httpserver, mailbox=None, **extra: str) -> NotificationSettings:
    values = {
        "MARKETPULSE_SLACK_WEBHOOK_URL": httpserver.url_for("/slack/T000/B000/XXXX"),
        "MARKETPULSE_ALERT_WEBHOOK_URL": httpserver.url_for("/hook"),
        "MARKETPULSE_ALERT_WEBHOOK_SECRET": SECRET,
        "MARKETPULSE_DAGSTER_URL": "http://dagster.example:3000",
        "MARKETPULSE_NOTIFY_RETRY_SECONDS": "60",
        **(
            {"MARKETPULSE_SMTP_URL": mailbox.url, "MARKETPULSE_ALERT_EMAIL_TO": "desk@example.com"}
            if mailbox
            else {}
        ),
        **extra,
    }
    return notification_settings(lambda name: values.get(name) or None)


def add_alert(conn, symbol: str, day: dt.date, p_value: float, is_alert: bool = True) -> int:
    key = anomaly_id(symbol, pd.Timestamp(day), "alert", "alert")
    conn.execute(
        'INSERT INTO alert_scores (symbol, "timestamp", p_value, is_alert, market_wide,'
        " return_pct, p_return, p_volatility_adjusted, p_range, p_volume, p_market_relative,"
        " methods, details, id) VALUES (%s, %s, %s, %s, false, -7.5, %s, 0.002, 0.3, 0.6, 0.01,"
        " %s, %s, %s)"
        ' ON CONFLICT (symbol, "timestamp") DO UPDATE SET is_alert = excluded.is_alert',
        [
            symbol,
            day,
            p_value,
            is_alert,
            p_value,
            ["return"],
            json.dumps({"statistic": {"return": 6.1, "volume": 0.4}}),
            key,
        ],
    )
    return key


def add_prices(conn, symbol: str) -> None:
    days = sessions_between(session_offset(LATEST, -30), LATEST)
    conn.cursor().executemany(
        'INSERT INTO stock_prices (symbol, "timestamp", open, high, low, close, volume, source)'
        " VALUES (%s, %s, %s, %s, %s, %s, %s, 'test')",
        [(symbol, d.date(), 100 + i, 102 + i, 99 + i, 101 + i, 1e6) for i, d in enumerate(days)],
    )


def notifier(conn, settings: NotificationSettings, now: dt.datetime = NOW) -> Notifier:
    from marketpulse_pipeline.delivery.charts import symbol_chart

    return Notifier(conn, settings, channels_from(settings), now, lambda s: symbol_chart(conn, s))


def posts(httpserver, path: str) -> list:
    return [request for request, _ in httpserver.log if request.path == path]


def statuses(conn) -> list[tuple]:
    return conn.execute(
        "SELECT symbol, channel, status, attempts FROM alert_deliveries WHERE kind = 'alert'"
        ' ORDER BY symbol, "timestamp", channel'
    ).fetchall()


@pytest.fixture
def receiver(httpserver):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    httpserver.expect_request("/slack/T000/B000/XXXX", method="POST").respond_with_data("ok")
    return httpserver


def test_each_alert_reaches_every_channel_once(conn, receiver, mailbox):
    add_prices(conn, "AAPL")
    first = add_alert(conn, "AAPL", LATEST, 0.0004)
    add_alert(conn, "TSLA", session_offset(LATEST, -1), 0.0002)
    chosen = configured(receiver, mailbox)
    report = notifier(conn, chosen).deliver_alerts(LATEST)
    assert (report.sent, report.failed) == (6, 0)
    hooks = posts(receiver, "/hook")
    assert len(hooks) == 2 and len(posts(receiver, "/slack/T000/B000/XXXX")) == 2
    body = next(json.loads(h.data) for h in hooks if json.loads(h.data)["symbol"] == "AAPL")
    assert body["id"] == str(first) and body["session"] == "2025-12-31"
    assert body["link"] == "http://dagster.example:3000/assets/alerts?partition=AAPL"
    jsonschema.validate(body, json.loads(SCHEMA.read_text()))
    # the signature: HMAC-SHA256 of "<t>.<body>" with the shared secret
    fields = dict(
        part.split("=", 1) for part in hooks[0].headers["X-MarketPulse-Signature"].split(",")
    )
    expected = hmac.new(SECRET.encode(), f"{fields['t']}.".encode() + hooks[0].data, hashlib.sha256)
    assert fields["v1"] == expected.hexdigest()
    [aapl] = [m for m in mailbox.messages if m["Subject"].startswith("AAPL")]
    assert [p.get_content_type() for p in aapl.walk()].count("image/png") == 1  # its chart
    assert len(mailbox.messages) == 2

    again = notifier(conn, chosen).deliver_alerts(LATEST)  # a re-run of the same window
    assert again.sent == 0 and len(receiver.log) == 4 and len(mailbox.messages) == 2


def test_two_evaluations_at_once_send_each_alert_once(database_url, receiver):
    from marketpulse_pipeline.storage.database import connect

    with connect(database_url) as conn:
        for i, symbol in enumerate(["AAPL", "MSFT", "NVDA", "TSLA"]):
            add_alert(conn, symbol, LATEST, 0.0001 * (i + 1))
    chosen = configured(receiver)
    start = threading.Barrier(2)

    def evaluate() -> None:
        with connect(database_url) as own:
            start.wait()
            notifier(own, chosen).deliver_alerts(LATEST)

    threads = [threading.Thread(target=evaluate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [json.loads(h.data)["id"] for h in posts(receiver, "/hook")]
    assert len(ids) == 4 == len(set(ids))


def test_a_failed_delivery_is_retried_with_backoff_then_given_up(conn, httpserver):
    httpserver.expect_ordered_request("/hook", method="POST").respond_with_data("busy", 500)
    httpserver.expect_ordered_request("/hook", method="POST").respond_with_data("ok")
    add_alert(conn, "AAPL", LATEST, 0.0004)
    chosen = configured(
        httpserver, MARKETPULSE_SLACK_WEBHOOK_URL="", MARKETPULSE_NOTIFY_MAX_ATTEMPTS="2"
    )
    first = notifier(conn, chosen).deliver_alerts(LATEST)
    assert (first.sent, first.failed) == (0, 1) and "webhook: HTTP 500: busy" in first.errors[0]
    assert notifier(conn, chosen, NOW + dt.timedelta(seconds=30)).deliver_alerts(LATEST).sent == 0
    later = notifier(conn, chosen, NOW + dt.timedelta(seconds=61)).deliver_alerts(LATEST)
    assert later.sent == 1 and statuses(conn) == [("AAPL", "webhook", "sent", 2)]
    assert len(posts(httpserver, "/hook")) == 2  # one refused, one delivered


def test_a_receiver_that_stays_down_is_given_up_visibly(conn, capsys):
    add_alert(conn, "AAPL", LATEST, 0.0004)
    down = f"http://127.0.0.1:{_free_port()}/hook"
    chosen = notification_settings(
        {
            "MARKETPULSE_ALERT_WEBHOOK_URL": down,
            "MARKETPULSE_NOTIFY_MAX_ATTEMPTS": "2",
            "MARKETPULSE_NOTIFY_RETRY_SECONDS": "0",
        }.get
    )
    assert notifier(conn, chosen).deliver_alerts(LATEST).failed == 1
    assert notifier(conn, chosen).deliver_alerts(LATEST).gave_up == 1
    assert statuses(conn) == [("AAPL", "webhook", "gave_up", 2)]
    assert notifier(conn, chosen).deliver_alerts(LATEST).sent == 0  # it stays given up


def test_an_alert_taken_back_before_it_went_out_is_never_sent(conn, httpserver):
    httpserver.expect_ordered_request("/hook", method="POST").respond_with_data("busy", 503)
    add_alert(conn, "AAPL", LATEST, 0.0004)
    chosen = configured(
        httpserver, MARKETPULSE_SLACK_WEBHOOK_URL="", MARKETPULSE_NOTIFY_RETRY_SECONDS="0"
    )
    notifier(conn, chosen).deliver_alerts(LATEST)
    add_alert(conn, "AAPL", LATEST, 0.0004, is_alert=False)  # a recomputation took it back
    report = notifier(conn, chosen).deliver_alerts(LATEST)
    assert report.withdrawn == 1 and statuses(conn) == [("AAPL", "webhook", "withdrawn", 1)]
    assert len(posts(httpserver, "/hook")) == 1


def test_snooze_quiet_mode_and_thresholds(conn, receiver):
    days = [session_offset(LATEST, -k) for k in (30, 4, 2, 0)]
    add_alert(conn, "AAPL", days[0], 0.0001)  # a backfilled month-old alert: quiet
    add_alert(conn, "AAPL", days[1], 0.0005)  # goes out
    add_alert(conn, "AAPL", days[2], 0.0008)  # weaker, two sessions later: snoozed
    add_alert(conn, "AAPL", days[3], 0.0001)  # stronger: goes out despite the snooze
    add_alert(conn, "MSFT", days[3], 0.0009)  # above the channel's threshold
    chosen = configured(
        receiver, MARKETPULSE_SLACK_WEBHOOK_URL="", MARKETPULSE_ALERT_WEBHOOK_MAX_P_VALUE="0.0008"
    )
    report = notifier(conn, chosen).deliver_alerts(LATEST)
    assert report.sent == 2
    assert report.suppressed == {"quiet": 1, "snoozed": 1, "p_value": 1}
    sent = {json.loads(h.data)["session"] for h in posts(receiver, "/hook")}
    assert sent == {days[1].isoformat(), days[3].isoformat()}


def test_a_digest_is_one_message_per_session(conn, receiver):
    add_alert(conn, "AAPL", LATEST, 0.0004)
    add_alert(conn, "TSLA", LATEST, 0.0002)
    chosen = configured(receiver, MARKETPULSE_ALERT_WEBHOOK_URL="", MARKETPULSE_SLACK_MODE="digest")
    notifier(conn, chosen).deliver_alerts(LATEST)
    [digest] = posts(receiver, "/slack/T000/B000/XXXX")
    body = json.loads(digest.data)
    assert body["text"] == "MarketPulse 2025-12-31: 2 alerts"
    shown = json.dumps(body["blocks"])
    assert "AAPL 2025-12-31" in shown and "TSLA 2025-12-31" in shown
    assert [s for *_, s, _ in statuses(conn)] == ["sent", "sent"]
    add_alert(conn, "NVDA", LATEST, 0.0003)  # a later alert of the same session: next digest
    notifier(conn, chosen).deliver_alerts(LATEST)
    assert len(posts(receiver, "/slack/T000/B000/XXXX")) == 1


def test_a_run_failure_goes_out_once(conn, receiver):
    chosen = configured(receiver)
    message = failure_message(
        "0123abcd-run",
        "marketpulse_daily",
        "stock_prices",
        "AAPL..QQQ",
        "VendorError: stooq: HTTP 503",
        chosen,
    )
    for _ in range(2):
        notifier(conn, chosen).deliver_once(stable_id("run", "0123abcd-run"), message)
    [hook] = posts(receiver, "/hook")
    body = json.loads(hook.data)
    assert body["schema"] == "marketpulse.run_failure/v1" and body["step"] == "stock_prices"
    assert body["link"] == "http://dagster.example:3000/runs/0123abcd-run"
    jsonschema.validate(body, json.loads(SCHEMA.read_text()))
    assert len(posts(receiver, "/slack/T000/B000/XXXX")) == 1


def test_the_asset_stays_green_when_a_channel_is_down(conn, database_url, monkeypatch):
    from marketpulse_pipeline.assets.notifications import build_notifications_asset
    from marketpulse_pipeline.resources import ClockResource, NotifierResource, PostgresResource

    add_alert(conn, "AAPL", LATEST, 0.0004)
    result = dg.materialize(
        [build_notifications_asset()],
        resources={
            "database": PostgresResource(url=database_url),
            "notifier": NotifierResource(alert_webhook_url=f"http://127.0.0.1:{_free_port()}/hook"),
            "clock": ClockResource(now=NOW.isoformat()),
        },
        selection=["alert_notifications"],
        raise_on_error=False,
    )
    assert result.success
    [event] = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["failed"].value == 1 and metadata["channels"].value == "webhook"
    assert "webhook: ConnectError" in metadata["errors"].value


def test_notify_test_and_undelivered_from_the_cli(env, conn, receiver, monkeypatch, capsys):
    monkeypatch.setenv("MARKETPULSE_ALERT_WEBHOOK_URL", receiver.url_for("/hook"))
    assert main(["notify", "test"]) == 0
    assert capsys.readouterr().out == "webhook: sent\n"
    assert json.loads(posts(receiver, "/hook")[0].data)["schema"] == "marketpulse.test/v1"

    monkeypatch.setenv(
        "MARKETPULSE_SLACK_WEBHOOK_URL", f"http://127.0.0.1:{_free_port()}/T0/B0/tok3n"
    )
    assert main(["notify", "test"]) == 1
    out = capsys.readouterr().out
    assert "webhook: sent" in out and "slack: failed: slack: ConnectError" in out
    assert "tok3n" not in out

    add_alert(conn, "AAPL", LATEST, 0.0004)
    chosen = notification_settings({"MARKETPULSE_SLACK_WEBHOOK_URL": "http://127.0.0.1:9/x"}.get)
    notifier(conn, chosen).deliver_alerts(LATEST)
    assert main(["alerts", "--undelivered", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["symbol"], row["channel"], row["status"]) == ("AAPL", "slack", "failed")


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("MARKETPULSE_SMTP_URL", "http://user:hunter2@mail", "MARKETPULSE_SMTP_URL is not smtp://"),
        ("MARKETPULSE_SLACK_WEBHOOK_URL", "hooks.slack.com/T/B/tok3n", "is not an http"),
        ("MARKETPULSE_SLACK_MODE", "weekly", "use alert or digest"),
        ("MARKETPULSE_ALERT_WEBHOOK_URL", "http://127.0.0.1:abc/tok3n", "is not an http"),
        ("MARKETPULSE_SMTP_URL", "smtp://u:hunter2@mail:0", "MARKETPULSE_SMTP_URL is not smtp://"),
        ("MARKETPULSE_NOTIFY_SNOOZE_SESSIONS", "-1", "whole number from 0 to 1000"),
        ("MARKETPULSE_NOTIFY_MAX_P_VALUE", "2", "is not a probability"),
    ],
)
def test_a_bad_variable_is_one_line_that_keeps_its_secret(
    monkeypatch, tmp_path, name, value, message
):
    monkeypatch.setenv("MARKETPULSE_HOME", str(tmp_path))
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message) as error:
        Settings.from_env()
    assert name in str(error.value) and "hunter2" not in str(error.value)
    assert "tok3n" not in str(error.value)


alert_rows = st.lists(
    st.tuples(
        st.sampled_from(["AAPL", "MSFT"]),
        st.integers(0, 40),
        st.sampled_from([0.0001, 0.0003, 0.0006, 0.0009]),
    ),
    max_size=25,
    unique_by=lambda row: row[:2],
)


@settings(max_examples=60, deadline=None)
@given(rows=alert_rows, snooze=st.integers(0, 6), recent=st.integers(1, 30))
def test_the_plan_never_sends_a_weaker_alert_within_the_snooze(rows, snooze, recent):
    alerts = pd.DataFrame(
        [
            (
                anomaly_id(s, pd.Timestamp(session_offset(LATEST, -k)), "alert", "alert"),
                s,
                pd.Timestamp(session_offset(LATEST, -k)),
                p,
            )
            for s, k, p in rows
        ],
        columns=["id", "symbol", "timestamp", "p_value"],
    )
    chosen = notification_settings(
        {
            "MARKETPULSE_ALERT_WEBHOOK_URL": "http://127.0.0.1/hook",
            "MARKETPULSE_NOTIFY_SNOOZE_SESSIONS": str(snooze),
            "MARKETPULSE_NOTIFY_RECENT_SESSIONS": str(recent),
        }.get
    )
    none = pd.DataFrame(columns=["alert_id", "channel", "symbol", "timestamp", "p_value", "status"])
    plan = plan_deliveries(alerts, none, chosen, LATEST)
    assert sorted(plan["alert_id"]) == sorted(alerts["id"])  # every alert decided, once
    going = plan[plan["status"].isin(NOTIFIED)].sort_values("timestamp")
    assert (going["timestamp"] >= pd.Timestamp(session_offset(LATEST, -(recent - 1)))).all()
    sessions = pd.DatetimeIndex(sessions_between(session_offset(LATEST, -60), LATEST))
    for _, mine in going.groupby("symbol"):
        at = sessions.get_indexer(mine["timestamp"])
        for i in range(1, len(mine)):
            close = at[i] - at[:i] <= snooze
            assert (
                not close.any() or mine["p_value"].iloc[i] < mine["p_value"].iloc[:i][close].min()
            )
    # planning again with what was planned adds nothing: a re-run sends nothing twice
    again = plan_deliveries(alerts, plan.rename(columns={}), chosen, LATEST)
    assert again.empty


@pytest.mark.slow
def test_the_demo_delivers_its_recent_alerts_once(env, conn, receiver, mailbox, monkeypatch):
    for name, value in {
        "MARKETPULSE_SLACK_WEBHOOK_URL": receiver.url_for("/slack/T000/B000/XXXX"),
        "MARKETPULSE_ALERT_WEBHOOK_URL": receiver.url_for("/hook"),
        "MARKETPULSE_ALERT_WEBHOOK_SECRET": SECRET,
        "MARKETPULSE_SMTP_URL": mailbox.url,
        "MARKETPULSE_ALERT_EMAIL_TO": "desk@example.com",
        "MARKETPULSE_NOTIFY_RECENT_SESSIONS": "60",
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["demo"]) == 0
    alerts = conn.execute(
        "SELECT count(*) FROM alert_deliveries WHERE status = 'sent' AND channel = 'webhook'"
    ).fetchone()[0]
    assert alerts >= 1
    assert len(posts(receiver, "/hook")) == len(posts(receiver, "/slack/T000/B000/XXXX")) == alerts
    assert len(mailbox.messages) == alerts
    assert all("image/png" in [p.get_content_type() for p in m.walk()] for m in mailbox.messages)
    older = conn.execute(
        "SELECT count(*) FROM alert_deliveries WHERE reason LIKE 'quiet%%'"
    ).fetchone()[0]
    assert older > 0  # the window's older alerts: history, not news

    assert main(["demo"]) == 0  # a second demo: nothing new goes out
    assert len(receiver.log) == 2 * alerts and len(mailbox.messages) == alerts


def test_the_failure_sensor_names_the_step_symbols_and_cause(conn, database_url, receiver):
    from marketpulse_pipeline.assets.notifications import build_failure_sensor
    from marketpulse_pipeline.resources import ClockResource, NotifierResource, PostgresResource

    @dg.op
    def stock_prices() -> None:
        raise ValueError("stooq: HTTP 503 for AAPL")

    @dg.job
    def marketpulse_daily() -> None:
        stock_prices()

    with dg.DagsterInstance.ephemeral() as instance:
        result = marketpulse_daily.execute_in_process(
            instance=instance,
            raise_on_error=False,
            tags={
                "dagster/asset_partition_range_start": "AAPL",
                "dagster/asset_partition_range_end": "QQQ",
            },
        )
        failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
        resources = {
            "database": PostgresResource(url=database_url),
            "notifier": NotifierResource(alert_webhook_url=receiver.url_for("/hook")),
            "clock": ClockResource(now=NOW.isoformat()),
        }
        sensor = build_failure_sensor()
        for _ in range(2):  # the daemon may see the same failure twice: one message
            with dg.build_run_status_sensor_context(
                sensor_name=sensor.name,
                dagster_event=failure,
                dagster_instance=instance,
                dagster_run=result.dagster_run,
                resources=resources,
            ) as context:
                sensor(context.for_run_failure())
    [hook] = posts(receiver, "/hook")
    body = json.loads(hook.data)
    assert (body["step"], body["symbols"]) == ("stock_prices", "AAPL..QQQ")
    assert body["cause"] == "ValueError: stooq: HTTP 503 for AAPL"
    assert body["run_id"] == result.run_id


def test_a_receiver_that_echoes_the_url_does_not_leak_its_token(conn, httpserver):
    token_path = "/services/T0/B0/SLACKTOKEN123"
    httpserver.expect_request(token_path).respond_with_data(f"no such hook {token_path}", 404)
    httpserver.expect_request("/hook").respond_with_data(
        "bad request for /hook?token=WHTOKEN42", 400
    )
    add_alert(conn, "AAPL", LATEST, 0.0004)
    chosen = notification_settings(
        {
            "MARKETPULSE_SLACK_WEBHOOK_URL": httpserver.url_for(token_path),
            "MARKETPULSE_ALERT_WEBHOOK_URL": httpserver.url_for("/hook") + "?token=WHTOKEN42",
        }.get
    )
    report = notifier(conn, chosen).deliver_alerts(LATEST)
    stored = " ".join(e for (e,) in conn.execute("SELECT last_error FROM alert_deliveries"))
    for text in (" ".join(report.errors), stored):
        assert "HTTP 404" in text and "HTTP 400" in text
        assert "SLACKTOKEN123" not in text and "WHTOKEN42" not in text


def test_a_receiver_that_never_answers_is_given_up_on_in_time(conn):
    import time as clock

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        add_alert(conn, "AAPL", LATEST, 0.0004)
        chosen = dataclasses.replace(
            notification_settings(
                {
                    "MARKETPULSE_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{silent.getsockname()[1]}/"
                }.get
            ),
            timeout_seconds=1.0,
        )
        began = clock.monotonic()
        report = notifier(conn, chosen).deliver_alerts(LATEST)
        assert clock.monotonic() - began < 5
    assert report.errors == ["webhook: no answer within 1 s"]


def test_a_recipient_the_server_refuses_is_noted_not_resent(conn, mailbox):
    async def refuse(server, session, envelope, address, options):
        if address.startswith("nobody@"):
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    mailbox.handle_RCPT = refuse
    add_alert(conn, "AAPL", LATEST, 0.0004)
    chosen = notification_settings(
        {
            "MARKETPULSE_SMTP_URL": mailbox.url,
            "MARKETPULSE_ALERT_EMAIL_TO": "desk@example.com,nobody@example.com",
        }.get
    )
    report = notifier(conn, chosen).deliver_alerts(LATEST)
    assert report.sent == 1 and report.errors == ["email: refused for nobody@example.com"]
    assert conn.execute("SELECT status, last_error FROM alert_deliveries").fetchall() == [
        ("sent", "refused for nobody@example.com")
    ]
    assert notifier(conn, chosen).deliver_alerts(LATEST).sent == 0 and len(mailbox.messages) == 1


def test_undelivered_filters_and_retry_requeues(env, conn, capsys):
    add_alert(conn, "AAPL", LATEST, 0.0004)
    add_alert(conn, "MSFT", LATEST, 0.0003)
    add_prices(conn, "AAPL")
    add_prices(conn, "MSFT")
    chosen = notification_settings(
        {
            "MARKETPULSE_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/x",
            "MARKETPULSE_NOTIFY_MAX_ATTEMPTS": "1",
        }.get
    )
    assert notifier(conn, chosen).deliver_alerts(LATEST).gave_up == 2
    assert main(["alerts", "--undelivered", "--symbol", "MSFT", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["symbol"] == "MSFT" and row["status"] == "gave_up"
    assert isinstance(row["id"], str) and row["next_attempt_at"] is None
    assert main(["alerts", "--undelivered", "--symbol", "ZZZZ"]) == 2
    assert main(["notify", "retry"]) == 0
    assert "2 deliveries due again" in capsys.readouterr().out
    assert {s for *_, s, _ in statuses(conn)} == {"failed"}

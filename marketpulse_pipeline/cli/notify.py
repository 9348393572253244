"""`marketpulse notify test`: one test message to every configured channel, each result shown."""

import argparse
import datetime as dt

from marketpulse_pipeline.settings import Settings, SettingsError


def add_commands(commands: argparse._SubParsersAction) -> None:
    notify = commands.add_parser("notify", help="notification channels (Slack, webhook, email)")
    actions = notify.add_subparsers(required=True, metavar="ACTION")
    test = actions.add_parser("test", help="send a test message to every configured channel")
    test.set_defaults(handler=_test)
    retry = actions.add_parser(
        "retry",
        help="make deliveries that gave up, or were stuck sending (a killed process), due again",
    )
    retry.set_defaults(handler=_retry)


def _test(args: argparse.Namespace, settings: Settings) -> int:
    from marketpulse_pipeline.delivery.channels import DeliveryError, channels_from
    from marketpulse_pipeline.delivery.messages import test_message

    channels = channels_from(settings.notifications)
    if not channels:
        raise SettingsError(
            "no channel is configured: set MARKETPULSE_SLACK_WEBHOOK_URL,"
            " MARKETPULSE_ALERT_WEBHOOK_URL or MARKETPULSE_SMTP_URL"
        )
    message = test_message(settings.notifications, settings.now or dt.datetime.now(dt.UTC))
    failed = 0
    for channel in channels:
        try:
            channel.send(message, key=f"test-{message.payload['sent_at']}-{channel.name}")
            print(f"{channel.name}: sent")
        except DeliveryError as error:
            failed += 1
            print(f"{channel.name}: failed: {error}")
    return 1 if failed else 0


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    from marketpulse_pipeline.storage.database import connect, resolve_url
    from marketpulse_pipeline.storage.deliveries import requeue

    with connect(resolve_url(settings.database_url, settings.home)) as conn:
        count = requeue(conn)
    print(f"{count} deliveries due again: they go out on the next evaluation")
    return 0

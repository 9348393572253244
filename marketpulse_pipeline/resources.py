"""Dagster resources: the database (and the run's symbol locks), the price source, the window
of sessions a run loads, and the clock.

Their values come from `Settings` (the `MARKETPULSE_*` environment, validated once) and show in
the Dagster UI; the database URL is wired with `EnvVar`, so a password is never displayed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg
from pydantic import Field, PrivateAttr, field_validator, model_validator

from marketpulse_pipeline.calendar import latest_completed_session
from marketpulse_pipeline.delivery.channels import channels_from
from marketpulse_pipeline.delivery.charts import symbol_chart
from marketpulse_pipeline.delivery.config import NotificationSettings, notification_settings
from marketpulse_pipeline.delivery.notify import Notifier
from marketpulse_pipeline.session_plan import PriceRequest
from marketpulse_pipeline.settings import (
    DEFAULT_STOOQ_URL,
    DEFAULT_YAHOO_URL,
    SOURCES,
    Settings,
    normalise_database_url,
    parse_date,
    parse_moment,
)
from marketpulse_pipeline.sources import CsvSource, PriceSource, SampleSource, SyntheticSource
from marketpulse_pipeline.storage.database import connect, resolve_url
from marketpulse_pipeline.storage.status import record_outcome
from marketpulse_pipeline.storage.symbol_locks import SymbolLocks


class PostgresResource(dg.ConfigurableResource):
    """The PostgreSQL server holding MarketPulse's tables, and the run's lock on its symbols."""

    url: str = Field(
        default="",
        description="MARKETPULSE_DATABASE_URL; empty: the embedded server under `home`",
    )
    home: str = Field(default="~/.marketpulse", description="MARKETPULSE_HOME")
    lock_wait_seconds: float = Field(
        default=900.0,
        description="How long a run waits for another run that is processing one of its symbols",
    )
    _locks: SymbolLocks | None = PrivateAttr(default=None)
    _url: str | None = PrivateAttr(default=None)

    def resolved_url(self) -> str:
        """The server's URL, resolved once per run: for the embedded server that means checking
        (or starting) it, which every step's connections need not repeat."""
        if self._url is None:
            url = normalise_database_url(self.url) if self.url else None
            self._url = resolve_url(url, Path(self.home).expanduser())
        return self._url

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        with connect(self.resolved_url()) as conn:
            yield conn

    def hold_symbols(self, context: dg.AssetExecutionContext) -> None:
        """Lock the run's symbols until the run ends: another run on them waits (one writer per
        symbol). Runs execute in one process (the in-process executor), so the lock taken by the
        first step covers every later one."""
        if self._locks is not None and self._locks.lost:
            self._locks = None
        if self._locks is None:
            self._locks = SymbolLocks(self.resolved_url(), context.run.run_id)
        self._locks.acquire(context.partition_keys, self.lock_wait_seconds, context.log.warning)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._locks is not None:
            self._locks.release()
            self._locks = None

    @contextmanager
    def outcome(self, context: dg.AssetExecutionContext, asset: str) -> Iterator[Problems]:
        """Record how this step ended for each symbol (read by `pipeline_health`): a problem
        added to the yielded `Problems` marks its symbols failed although nothing was raised.

        A transient database error (connection lost, server restarting, serialization failure)
        retries the step with exponential backoff: every write is one transaction, so a retried
        step starts from consistent tables.
        """
        problems = Problems()
        try:
            yield problems
        except psycopg.OperationalError as error:
            if _transient(error) and context.retry_number < TRANSIENT_RETRIES:
                wait = 2.0**context.retry_number
                context.log.warning(f"{_one_line(error)}: retrying in {wait:.0f}s")
                raise dg.RetryRequested(
                    max_retries=TRANSIENT_RETRIES, seconds_to_wait=wait
                ) from error
            problems.add(_one_line(error))
            self._record(context, asset, problems)
            raise
        except BaseException as error:
            problems.add(_one_line(error))
            self._record(context, asset, problems)
            raise
        self._record(context, asset, problems)

    def _record(self, context: dg.AssetExecutionContext, asset: str, problems: Problems) -> None:
        by_failure: dict[str | None, list[str]] = {}
        for symbol in context.partition_keys:
            by_failure.setdefault(problems.of(symbol), []).append(symbol)
        try:
            with self.connect() as conn:
                for failure, symbols in by_failure.items():
                    record_outcome(conn, asset, symbols, context.run.run_id, failure)
        except psycopg.Error as error:  # the original failure matters more than its record
            context.log.warning(f"could not record the outcome of {asset}: {_one_line(error)}")


class Problems:
    """What went wrong in a step: for all its symbols, or for some."""

    def __init__(self) -> None:
        self._all: list[str] = []
        self._some: dict[str, list[str]] = {}

    def add(self, message: str, symbols: Iterable[str] | None = None) -> None:
        if symbols is None:
            self._all.append(message)
        for symbol in symbols or ():
            self._some.setdefault(symbol, []).append(message)

    def of(self, symbol: str) -> str | None:
        """The symbol's problems in one line; None when it had none."""
        return "; ".join(self._all + self._some.get(symbol, [])) or None


class PriceSourceResource(dg.ConfigurableResource):
    """Where raw daily bars come from, and the first day loaded for a symbol with no data yet."""

    kind: str = Field(
        default="synthetic",
        description="MARKETPULSE_SOURCE: synthetic, csv, sample, stooq or yahoo",
    )
    stooq_url: str = Field(
        default=DEFAULT_STOOQ_URL, description="MARKETPULSE_STOOQ_URL, for the stooq source"
    )
    yahoo_url: str = Field(
        default=DEFAULT_YAHOO_URL,
        description="MARKETPULSE_YAHOO_URL, for the yahoo source",
    )
    csv_dir: str = Field(default="", description="MARKETPULSE_CSV_DIR, for the csv source")
    seed: int = Field(default=42, description="MARKETPULSE_SEED, for the synthetic source")
    anomaly_rate: float = Field(
        default=0.01, description="Share of symbol-days the synthetic source plants an anomaly on"
    )
    first_day: str = Field(
        description="MARKETPULSE_START_DATE: the first day loaded for a symbol with no prices"
    )
    max_missing_sessions: int = Field(
        default=0,
        description="MARKETPULSE_MAX_MISSING_SESSIONS: sessions a symbol's history may lack"
        " before its computed assets stop at the first missing one",
    )

    def build(self, as_of: dt.date) -> PriceSource:
        """The source, serving history as of `as_of` (the latest completed session): a real
        vendor's today is the wall clock's; the synthetic one follows a pinned clock too."""
        if self.kind == "synthetic":
            return SyntheticSource(seed=self.seed, anomaly_rate=self.anomaly_rate, as_of=as_of)
        if self.kind == "csv":
            return CsvSource(Path(self.csv_dir))
        if self.kind == "sample":
            return SampleSource()
        if self.kind == "stooq":
            from marketpulse_pipeline.sources.stooq import StooqSource  # HTTP only when used

            return StooqSource(self.stooq_url)
        if self.kind == "yahoo":
            from marketpulse_pipeline.sources.yahoo import YahooSource  # HTTP only when used

            return YahooSource(self.yahoo_url)
        raise ValueError(f"unknown price source {self.kind!r}; use one of {', '.join(SOURCES)}")

    def first_session(self) -> dt.date:
        return parse_date(self.first_day, "price_source.first_day")


class ClockResource(dg.ConfigurableResource):
    """What time it is: decides the latest completed NYSE session, after which nothing is loaded.

    Its own resource, so that a run's window config never replaces a pinned clock."""

    now: str | None = Field(
        default=None,
        description="MARKETPULSE_NOW: a pinned clock (tests, reproducible runs); empty: the"
        " system clock",
    )

    @field_validator("now")
    @classmethod
    def _a_moment(cls, text: str | None) -> str | None:
        if text:
            parse_moment(text, "clock.now")
        return text or None

    def latest(self) -> dt.date:
        """The latest completed NYSE session: nothing after it is ever loaded."""
        return latest_completed_session(parse_moment(self.now, "clock.now") if self.now else None)

    def moment(self) -> dt.datetime:
        """Now, by this clock."""
        return parse_moment(self.now, "clock.now") if self.now else dt.datetime.now(dt.UTC)


class WindowResource(dg.ConfigurableResource):
    """Which trading days a run loads prices for; computed assets always catch up with them.

    Leave `start` and `end` empty to catch up: from the day after the symbol's last stored day
    through `as_of`. Set them (launchpad or `marketpulse backfill`) to re-load a range; a range
    that would leave a hole before or after the stored history is widened to meet it.
    """

    start: str | None = Field(default=None, description="First session to load (YYYY-MM-DD)")
    end: str | None = Field(
        default=None,
        description="Last session to load (YYYY-MM-DD); at most the latest completed session",
    )
    as_of: str | None = Field(
        default=None,
        description="Catch up through this day (the schedule's tick); never past the latest"
        " completed session; empty: the latest completed session",
    )

    @field_validator("start", "end", "as_of")
    @classmethod
    def _a_date(cls, text: str | None) -> str | None:
        if text:
            parse_date(text, "window")
        return text or None

    @model_validator(mode="after")
    def _a_window(self) -> WindowResource:
        self.request().check_shape()  # refused as the run starts, before any step
        return self

    def request(self) -> PriceRequest:
        def day(text: str | None, name: str) -> dt.date | None:
            return parse_date(text, f"window.{name}") if text else None

        return PriceRequest(
            day(self.start, "start"), day(self.end, "end"), day(self.as_of, "as_of")
        )


TRANSIENT_RETRIES = 4


def _transient(error: psycopg.OperationalError) -> bool:
    """Worth trying again: not a lock wait or statement that ran out of its time."""
    return not isinstance(error, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled)


def _one_line(error: BaseException) -> str:
    """The root cause of a failure, on one line."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = " ".join(str(error).split())
    if isinstance(error, ValueError) and text:  # our own refusals explain themselves
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class NotifierResource(dg.ConfigurableResource):
    """Where alerts go and the rules they follow (README, Notifications). The secrets are
    environment variables read when a run starts: the UI shows their names, never values."""

    slack_webhook_url: str = Field(default="", description="MARKETPULSE_SLACK_WEBHOOK_URL")
    alert_webhook_url: str = Field(default="", description="MARKETPULSE_ALERT_WEBHOOK_URL")
    alert_webhook_secret: str = Field(
        default="", description="MARKETPULSE_ALERT_WEBHOOK_SECRET: HMAC key of the signature"
    )
    smtp_url: str = Field(default="", description="MARKETPULSE_SMTP_URL: smtp://user:pass@host:587")
    rules: dict[str, str] = Field(
        default_factory=dict,
        description="The other MARKETPULSE_* notification variables (addresses, thresholds,"
        " modes, snooze, quiet mode, retries, the Dagster URL), by name",
    )

    def settings(self) -> NotificationSettings:
        secrets = {
            "MARKETPULSE_SLACK_WEBHOOK_URL": self.slack_webhook_url,
            "MARKETPULSE_ALERT_WEBHOOK_URL": self.alert_webhook_url,
            "MARKETPULSE_ALERT_WEBHOOK_SECRET": self.alert_webhook_secret,
            "MARKETPULSE_SMTP_URL": self.smtp_url,
        }
        values = {**self.rules, **secrets}
        return notification_settings(lambda name: values.get(name, "").strip() or None)

    def build(self, conn: psycopg.Connection, now: dt.datetime) -> Notifier:
        """A notifier on `conn`; email shows each alerted symbol's chart."""
        settings = self.settings()
        return Notifier(
            conn, settings, channels_from(settings), now, chart=lambda s: symbol_chart(conn, s)
        )


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The resources of a code location, all from one `Settings`."""
    return {
        "database": PostgresResource(
            url=dg.EnvVar("MARKETPULSE_DATABASE_URL") if settings.database_url else "",
            home=str(settings.home),
        ),
        "price_source": PriceSourceResource(
            kind=settings.source,
            csv_dir=str(settings.csv_dir or ""),
            seed=settings.seed,
            first_day=settings.start_date.isoformat(),
            stooq_url=settings.stooq_url,
            yahoo_url=settings.yahoo_url,
            max_missing_sessions=settings.max_missing_sessions,
        ),
        "window": WindowResource(),
        "clock": ClockResource(now=settings.now.isoformat() if settings.now else None),
        "notifier": NotifierResource(
            **{
                field: dg.EnvVar(name) if settings.notification_variables.get(name) else ""
                for field, name in SECRET_FIELDS.items()
            },
            rules={
                name: value
                for name, value in settings.notification_variables.items()
                if name not in SECRET_FIELDS.values()
            },
        ),
    }


SECRET_FIELDS = {
    "slack_webhook_url": "MARKETPULSE_SLACK_WEBHOOK_URL",
    "alert_webhook_url": "MARKETPULSE_ALERT_WEBHOOK_URL",
    "alert_webhook_secret": "MARKETPULSE_ALERT_WEBHOOK_SECRET",
    "smtp_url": "MARKETPULSE_SMTP_URL",
}

"""Dagster resources: the database, the price source and the processing window.

Their fields are the `MARKETPULSE_*` settings, shown in the Dagster UI; values that come from
the environment are wired with `EnvVar`, so a URL with a password is never displayed or stored.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg
from pydantic import Field

from marketpulse_pipeline.calendar import SessionWindow, latest_completed_session, resolve_windows
from marketpulse_pipeline.settings import Settings, default_start_date, parse_date
from marketpulse_pipeline.sources import CsvSource, PriceSource, SampleSource, SyntheticSource
from marketpulse_pipeline.storage.database import connect, resolve_url


class PostgresResource(dg.ConfigurableResource):
    """The PostgreSQL server holding MarketPulse's tables."""

    url: str = Field(
        default="",
        description="MARKETPULSE_DATABASE_URL; empty: the embedded server under `home`",
    )
    home: str = Field(default="~/.marketpulse", description="MARKETPULSE_HOME")

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        with connect(resolve_url(self.url or None, Path(self.home).expanduser())) as conn:
            yield conn


class PriceSourceResource(dg.ConfigurableResource):
    """Where raw daily bars come from, and the first day loaded for a symbol with no data yet."""

    kind: str = Field(
        default="synthetic", description="MARKETPULSE_SOURCE: synthetic, csv or sample"
    )
    csv_dir: str = Field(default="", description="MARKETPULSE_CSV_DIR, for the csv source")
    seed: int = Field(default=42, description="MARKETPULSE_SEED, for the synthetic source")
    anomaly_rate: float = Field(
        default=0.01, description="Share of symbol-days the synthetic source plants an anomaly on"
    )
    first_day: str = Field(
        default="", description="MARKETPULSE_START_DATE; empty: about two years back"
    )

    def build(self) -> PriceSource:
        if self.kind == "synthetic":
            return SyntheticSource(seed=self.seed, anomaly_rate=self.anomaly_rate)
        if self.kind == "csv":
            return CsvSource(Path(self.csv_dir))
        if self.kind == "sample":
            return SampleSource()
        raise ValueError(f"unknown price source {self.kind!r}; use synthetic, csv or sample")

    def first_session(self) -> dt.date:
        if not self.first_day:
            return default_start_date()
        return parse_date(self.first_day, "price_source.first_day")


class WindowResource(dg.ConfigurableResource):
    """Which trading days a run processes for each symbol.

    Leave `start` and `end` empty to catch up: from the day after the symbol's last stored day
    through `as_of`. Set them (launchpad or `marketpulse backfill`) to re-run or back-fill a range.
    """

    start: str | None = Field(default=None, description="First session to process (YYYY-MM-DD)")
    end: str | None = Field(default=None, description="Last session to process (YYYY-MM-DD)")
    as_of: str | None = Field(
        default=None, description="Process through this day; empty: the latest completed session"
    )

    def as_of_session(self) -> dt.date:
        return parse_date(self.as_of, "window.as_of") if self.as_of else latest_completed_session()

    def explicit(self) -> tuple[dt.date | None, dt.date | None]:
        """The `start` and `end` given in run config, if any."""
        start = parse_date(self.start, "window.start") if self.start else None
        end = parse_date(self.end, "window.end") if self.end else None
        if start and end and start > end:
            raise ValueError(f"window.start {start} is after window.end {end}")
        return start, end

    def resolve(
        self,
        symbols: Sequence[str],
        last_stored: Mapping[str, dt.date | None],
        first_day: dt.date,
    ) -> dict[str, SessionWindow]:
        start, end = self.explicit()
        return resolve_windows(
            symbols,
            last_stored,
            first_day=first_day,
            as_of=self.as_of_session(),
            start=start,
            end=end,
        )


def _from_env(name: str, default: str) -> str | dg.EnvVar:
    """`EnvVar(name)` when the variable is set (the UI shows its name, not its value)."""
    return dg.EnvVar(name) if os.environ.get(name, "").strip() else default


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    # `settings` has validated the environment; the resources read the same variables.
    return {
        "database": PostgresResource(
            url=_from_env("MARKETPULSE_DATABASE_URL", ""),
            home=_from_env("MARKETPULSE_HOME", str(settings.home)),
        ),
        "price_source": PriceSourceResource(
            kind=settings.source,
            csv_dir=str(settings.csv_dir or ""),
            seed=settings.seed,
            first_day=_from_env("MARKETPULSE_START_DATE", ""),
        ),
        "window": WindowResource(),
    }

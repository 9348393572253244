"""MarketPulse configuration: `MARKETPULSE_*` environment variables, validated once.

Every variable has a safe local default; a bad value fails at start with a message that
names the variable, instead of surfacing later as a confusing error deep inside a run.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from marketpulse_pipeline.calendar import EARLIEST_SESSION, session_offset

DEFAULT_SYMBOLS = ("AAPL", "GOOGL", "MSFT", "AMZN", "TSLA", "NVDA", "META", "SPY", "QQQ")
SOURCES = ("synthetic", "csv", "sample")
DEFAULT_HISTORY_SESSIONS = 504  # about two years of NYSE sessions
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\-^=]{0,15}$")


class SettingsError(ValueError):
    """A `MARKETPULSE_*` variable holds a value MarketPulse cannot use."""


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    home: Path
    source: str
    csv_dir: Path | None
    symbols: tuple[str, ...]
    start_date: dt.date
    seed: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        source = (get("MARKETPULSE_SOURCE") or "synthetic").lower()
        if source not in SOURCES:
            raise SettingsError(
                f"MARKETPULSE_SOURCE={source!r} is not a known source;"
                f" use one of {', '.join(SOURCES)}"
            )
        csv_dir = Path(get("MARKETPULSE_CSV_DIR") or ".").expanduser()
        if source == "csv" and not csv_dir.is_dir():
            raise SettingsError(f"MARKETPULSE_CSV_DIR={str(csv_dir)!r} is not a directory")
        return cls(
            database_url=get("MARKETPULSE_DATABASE_URL"),
            home=Path(get("MARKETPULSE_HOME") or "~/.marketpulse").expanduser(),
            source=source,
            csv_dir=csv_dir.resolve() if source == "csv" else None,
            symbols=parse_symbols(get("MARKETPULSE_SYMBOLS"), "MARKETPULSE_SYMBOLS"),
            start_date=_start_date(get("MARKETPULSE_START_DATE")),
            seed=_integer(get("MARKETPULSE_SEED") or "42", "MARKETPULSE_SEED"),
        )


def parse_symbols(text: str | None, origin: str) -> tuple[str, ...]:
    """A comma-separated watchlist, upper-cased and de-duplicated in the order given."""
    if not text:
        return DEFAULT_SYMBOLS
    symbols = tuple(dict.fromkeys(s.strip().upper() for s in text.split(",") if s.strip()))
    bad = [s for s in symbols if not _SYMBOL.match(s)]
    if bad or not symbols:
        raise SettingsError(f"{origin}={text!r} is not a comma-separated list of ticker symbols")
    return symbols


def parse_date(text: str, origin: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise SettingsError(f"{origin}={text!r} is not a date (expected YYYY-MM-DD)") from None


def default_start_date() -> dt.date:
    """About two years of sessions before today."""
    return session_offset(dt.date.today(), -DEFAULT_HISTORY_SESSIONS)


def _start_date(text: str | None) -> dt.date:
    if text is None:
        return default_start_date()
    day = parse_date(text, "MARKETPULSE_START_DATE")
    if day < EARLIEST_SESSION:
        raise SettingsError(
            f"MARKETPULSE_START_DATE={text!r} is before {EARLIEST_SESSION},"
            " the calendar's first day"
        )
    return day


def _integer(text: str, origin: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SettingsError(f"{origin}={text!r} is not an integer") from None

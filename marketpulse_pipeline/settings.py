"""MarketPulse configuration: `MARKETPULSE_*` environment variables, validated once.

Every variable has a safe local default; a bad value fails at start with a message that
names the variable, instead of surfacing later as a confusing error deep inside a run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from psycopg.conninfo import conninfo_to_dict

from marketpulse_pipeline.calendar import (
    EARLIEST_SESSION,
    MARKET_TIMEZONE,
    latest_completed_session,
    nyse,
    session_offset,
)
from marketpulse_pipeline.delivery.config import (
    VARIABLES,
    NotificationSettings,
    NotificationSettingsError,
    notification_settings,
)

DEFAULT_SYMBOLS = ("AAPL", "GOOGL", "MSFT", "AMZN", "TSLA", "NVDA", "META", "SPY", "QQQ")
SOURCES = ("synthetic", "csv", "sample", "stooq", "yahoo")
DEFAULT_STOOQ_URL = "https://stooq.com"
DEFAULT_YAHOO_URL = "https://query1.finance.yahoo.com"
DEFAULT_HISTORY_SESSIONS = 504  # about two years of NYSE sessions
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\-^=]{0,15}$")
_URL_SCHEMES = ("postgresql", "postgres")
_DRIVER_SCHEMES = ("postgresql+psycopg2", "postgresql+psycopg")  # SQLAlchemy spellings
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
# Over-redacting is fine, leaking is not: the userinfo runs to the *last* "@", and a keyword
# value runs to the next blank or "&" (a URL query's `password=` is caught by the same pattern).
_URL_USERINFO_PASSWORD = re.compile(r"^(\s*[A-Za-z][A-Za-z0-9+.\-]*://[^:]*:)(.*)(@)", re.S)
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&]*)", re.I | re.S)
MAX_SEED = 2**63 - 1


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
    max_missing_sessions: int = 0
    stooq_url: str = DEFAULT_STOOQ_URL
    """MARKETPULSE_STOOQ_URL: where the stooq source asks (a proxy, a test server)."""
    yahoo_url: str = DEFAULT_YAHOO_URL
    """MARKETPULSE_YAHOO_URL: where the yahoo source asks."""
    """MARKETPULSE_MAX_MISSING_SESSIONS: sessions a symbol's stored history may lack before its
    computed assets stop at the first missing one (and the gap check fails)."""
    now: dt.datetime | None = None
    """MARKETPULSE_NOW: a pinned clock (tests, reproducible runs); None is the system clock."""
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    """Where alerts go and their rules (MARKETPULSE_SLACK_*, _ALERT_WEBHOOK_*, _SMTP_URL, ...)."""
    notification_variables: dict[str, str] = field(default_factory=dict, repr=False)
    """Those variables as set, by name (secrets among them: never shown)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        get = variable_reader(environ)
        source = (get("MARKETPULSE_SOURCE") or "synthetic").lower()
        if source not in SOURCES:
            raise SettingsError(
                f"MARKETPULSE_SOURCE={source!r} is not a known source;"
                f" use one of {', '.join(SOURCES)}"
            )
        url = get("MARKETPULSE_DATABASE_URL")
        home = Path(get("MARKETPULSE_HOME") or "~/.marketpulse").expanduser()
        if url is None:  # the embedded server will live in MARKETPULSE_HOME
            _check_writable(home, "MARKETPULSE_HOME")
        now = _moment(get("MARKETPULSE_NOW"), "MARKETPULSE_NOW")
        try:
            notifications = notification_settings(get)
        except NotificationSettingsError as error:
            raise SettingsError(str(error)) from None
        return cls(
            database_url=None if url is None else normalise_database_url(url),
            home=home,
            source=source,
            csv_dir=_csv_dir(get("MARKETPULSE_CSV_DIR")) if source == "csv" else None,
            symbols=parse_symbols(get("MARKETPULSE_SYMBOLS"), "MARKETPULSE_SYMBOLS"),
            start_date=_start_date(get("MARKETPULSE_START_DATE"), now),
            seed=_seed(get("MARKETPULSE_SEED") or "42", "MARKETPULSE_SEED"),
            stooq_url=_http_url(get("MARKETPULSE_STOOQ_URL"), "MARKETPULSE_STOOQ_URL")
            or DEFAULT_STOOQ_URL,
            yahoo_url=_http_url(get("MARKETPULSE_YAHOO_URL"), "MARKETPULSE_YAHOO_URL")
            or DEFAULT_YAHOO_URL,
            max_missing_sessions=whole_variable(
                get("MARKETPULSE_MAX_MISSING_SESSIONS") or "0",
                "MARKETPULSE_MAX_MISSING_SESSIONS",
                0,
                10_000,
            ),
            now=now,
            notifications=notifications,
            notification_variables={name: v for name in VARIABLES if (v := get(name))},
        )

    def today(self) -> dt.date:
        """Today in New York, by this configuration's clock: where "the last N days" end."""
        moment = self.now or dt.datetime.now(dt.UTC)
        return moment.astimezone(ZoneInfo(MARKET_TIMEZONE)).date()

    def latest_session(self) -> dt.date:
        """The latest NYSE session whose close has passed, by this configuration's clock."""
        return latest_completed_session(self.now)


def parse_symbols(text: str | None, origin: str) -> tuple[str, ...]:
    """A comma-separated watchlist, upper-cased and de-duplicated in the order given.

    Only None (nothing given) means the default watchlist: an explicit empty value is refused,
    since silently running all default symbols is not what `--symbols ""` asked for.
    """
    if text is None:
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


def default_start_date(now: dt.datetime | None = None) -> dt.date:
    """About two years of sessions before the latest completed session."""
    return session_offset(latest_completed_session(now), -DEFAULT_HISTORY_SESSIONS)


def parse_moment(text: str, origin: str) -> dt.datetime:
    """An ISO date-time (UTC when it names no zone), or a date meaning its end in New York."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise SettingsError(
            f"{origin}={text!r} is not a date-time (expected e.g. 2025-07-03T22:00:00Z)"
        ) from None
    if len(text) == 10:  # a bare date: the end of that day in New York, after any close
        moment = dt.datetime.combine(moment.date(), dt.time(23, 59), ZoneInfo(MARKET_TIMEZONE))
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    last = nyse().last_session.date()
    if not EARLIEST_SESSION < moment.date() <= last:
        raise SettingsError(
            f"{origin}={text!r} is outside the NYSE calendar ({EARLIEST_SESSION} to {last})"
        )
    return moment


def _moment(text: str | None, origin: str) -> dt.datetime | None:
    return None if text is None else parse_moment(text, origin)


def _start_date(text: str | None, now: dt.datetime | None) -> dt.date:
    if text is None:
        return default_start_date(now)
    day = parse_date(text, "MARKETPULSE_START_DATE")
    if day < EARLIEST_SESSION:
        raise SettingsError(
            f"MARKETPULSE_START_DATE={text!r} is before {EARLIEST_SESSION},"
            " the calendar's first day"
        )
    return day


def whole_number(text: str, low: int, high: int) -> int:
    """`text` as a whole number from `low` to `high`: a value out of range is refused here, not
    by PostgreSQL or NumPy later, where the error would not name where it came from."""
    try:
        number = int(text)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise SettingsError(f"{text!r} is not a whole number from {low} to {high}")
    return number


def whole_variable(text: str, origin: str, low: int, high: int) -> int:
    """`whole_number` of the variable `origin`, its name in the message."""
    try:
        return whole_number(text, low, high)
    except SettingsError as error:
        raise SettingsError(f"{origin}={error}") from None


def variable_reader(environ: Mapping[str, str] | None = None) -> Callable[[str], str | None]:
    """A variable's value from `environ` (default: the process's), None when unset or blank."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        return env.get(name, "").strip() or None

    return get


def _seed(text: str, origin: str) -> int:
    """A seed NumPy accepts: a whole number from 0 to 2^63 - 1."""
    try:
        seed = int(text)
    except ValueError:
        raise SettingsError(f"{origin}={text!r} is not an integer") from None
    if not 0 <= seed <= MAX_SEED:
        raise SettingsError(f"{origin}={text!r} is out of range: a seed is from 0 to 2^63 - 1")
    return seed


def _http_url(text: str | None, origin: str) -> str | None:
    """A vendor's base URL: http or https, with a host."""
    if text is None:
        return None
    scheme, _, rest = text.partition("://")
    if scheme not in ("http", "https") or not rest.strip("/"):
        raise SettingsError(f"{origin} is not an http(s) URL (e.g. https://stooq.com)")
    return text.rstrip("/")


def _csv_dir(text: str | None) -> Path:
    """The csv source's directory: required, since reading the current directory by default
    would load whatever `<SYMBOL>.csv` files happen to lie there."""
    if text is None:
        raise SettingsError(
            "MARKETPULSE_CSV_DIR is not set: MARKETPULSE_SOURCE=csv needs the directory"
            " of <SYMBOL>.csv files"
        )
    directory = Path(text).expanduser()
    if not directory.is_dir():
        raise SettingsError(f"MARKETPULSE_CSV_DIR={text!r} is not a directory")
    return directory.resolve()


def _check_writable(directory: Path, origin: str) -> None:
    """Fail at start when `directory` cannot be created or written, not when initdb does."""
    existing = directory
    while not os.path.exists(existing) and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        try:  # root passes every access check: only creating it tells (e.g. under /proc)
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise SettingsError(
                f"{origin}={str(directory)!r} cannot be created ({error.strerror})"
            ) from None
        return
    if existing == directory:
        raise SettingsError(f"{origin}={str(directory)!r} is not a writable directory")
    raise SettingsError(
        f"{origin}={str(directory)!r} cannot be created: {str(existing)!r}"
        f" is not a writable directory"
    )


def normalise_database_url(url: str, origin: str = "MARKETPULSE_DATABASE_URL") -> str:
    """`url` as a `postgresql://` URL or libpq keyword string that psycopg can parse.

    SQLAlchemy spellings (`postgresql+psycopg2://`, `postgresql+psycopg://`) become
    `postgresql://`. Anything else fails here, naming `origin`, rather than at the first
    connection; the message shows the URL with its password as `***`.
    """
    text = _without_driver(url.strip())
    scheme = _SCHEME.match(text)
    if scheme and scheme[1] not in _URL_SCHEMES:
        raise SettingsError(
            f"{origin}={redact_url(url)!r} is not a PostgreSQL URL (scheme {scheme[1]!r});"
            " expected postgresql://user:password@host:port/dbname"
        )
    elif not scheme and "=" not in text:
        raise SettingsError(
            f"{origin}={redact_url(url)!r} is neither a postgresql:// URL nor libpq keywords"
            " (expected postgresql://user:password@host:port/dbname or 'host=... dbname=...')"
        )
    try:
        conninfo_to_dict(text)
    except psycopg.Error as error:
        reason = " ".join(scrub_password(str(error), url).split())
        raise SettingsError(
            f"{origin}={redact_url(url)!r} is not a valid PostgreSQL URL: {reason}"
        ) from None
    return text


def _without_driver(url: str) -> str:
    """`url` with a SQLAlchemy driver scheme replaced by the plain `postgresql` one."""
    scheme = _SCHEME.match(url)
    if scheme and scheme[1] in _DRIVER_SCHEMES:
        return "postgresql" + url[len(scheme[1]) :]
    return url


def redact_url(url: str) -> str:
    """`url` (or a libpq keyword string) with its password shown as `***`, for messages."""
    shown = _URL_USERINFO_PASSWORD.sub(r"\1***\3", url)
    return scrub_password(_KEYWORD_PASSWORD.sub(r"\1***", shown), url)


def scrub_password(text: str, url: str) -> str:
    """`text` (an error message, say) with every spelling of `url`'s password replaced by `***`."""
    for secret in _passwords(url):
        text = text.replace(secret, "***")
    return text


def _passwords(url: str) -> list[str]:
    """The password as written in `url` and as libpq decodes it, longest first."""
    found = {match[2] for match in _URL_USERINFO_PASSWORD.finditer(url)}
    for match in _KEYWORD_PASSWORD.finditer(url):
        found |= {match[2], match[2].strip("'")}
    with contextlib.suppress(psycopg.Error):  # unparsable: the spellings above are all there is
        found.add(conninfo_to_dict(_without_driver(url.strip())).get("password") or "")
    return sorted((secret for secret in found if secret), key=len, reverse=True)

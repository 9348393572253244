"""The API's own `MARKETPULSE_API_*` variables, validated once at start like `Settings`: a bad
value stops `marketpulse serve` with one line naming the variable, never showing its value."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from marketpulse_pipeline.settings import (
    SettingsError,
    normalise_database_url,
    variable_reader,
    whole_variable,
)

MIN_TOKEN_LENGTH = 16
_TOKEN = re.compile(rf"^[\x21-\x7e]{{{MIN_TOKEN_LENGTH},}}$")  # visible ASCII: header-safe
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")  # scheme, host, optional port; no path


@dataclass(frozen=True)
class ApiSettings:
    write_token: str | None = field(default=None, repr=False)
    """MARKETPULSE_API_TOKEN: Bearer token of the write routes; unset, they answer 403."""
    read_token: str | None = field(default=None, repr=False)
    """MARKETPULSE_API_READ_TOKEN: when set, reads need it (or the write token) too."""
    cors_origins: tuple[str, ...] = ()
    """MARKETPULSE_API_CORS_ORIGINS: browser origins allowed to call the API; none by default."""
    read_database_url: str | None = None
    """MARKETPULSE_API_READ_DATABASE_URL: a read-only role for reads (default: the main URL)."""
    statement_timeout_ms: int = 5000
    """MARKETPULSE_API_STATEMENT_TIMEOUT_MS: a query running longer is cancelled (503)."""
    pool_size: int = 8
    """MARKETPULSE_API_POOL_SIZE: read connections at most, per worker process."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        get = variable_reader(environ)
        read_url = get("MARKETPULSE_API_READ_DATABASE_URL")
        return cls(
            write_token=_token(get("MARKETPULSE_API_TOKEN"), "MARKETPULSE_API_TOKEN"),
            read_token=_token(get("MARKETPULSE_API_READ_TOKEN"), "MARKETPULSE_API_READ_TOKEN"),
            cors_origins=_origins(get("MARKETPULSE_API_CORS_ORIGINS")),
            read_database_url=None
            if read_url is None
            else normalise_database_url(read_url, "MARKETPULSE_API_READ_DATABASE_URL"),
            statement_timeout_ms=_number(
                get("MARKETPULSE_API_STATEMENT_TIMEOUT_MS"),
                "MARKETPULSE_API_STATEMENT_TIMEOUT_MS",
                5000,
                100,
                600_000,
            ),
            pool_size=_number(
                get("MARKETPULSE_API_POOL_SIZE"), "MARKETPULSE_API_POOL_SIZE", 8, 1, 100
            ),
        )


def _token(text: str | None, origin: str) -> str | None:
    """A secret: checked for shape only, and never repeated in the message."""
    if text is not None and not _TOKEN.match(text):
        raise SettingsError(
            f"{origin} must be at least {MIN_TOKEN_LENGTH} visible ASCII characters"
            " (no blanks); e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return text


def _origins(text: str | None) -> tuple[str, ...]:
    """`*` or comma-separated `http(s)://host[:port]` origins, as browsers send them."""
    if text is None:
        return ()
    origins = tuple(dict.fromkeys(o.strip().rstrip("/") for o in text.split(",") if o.strip()))
    if origins != ("*",) and not all(_ORIGIN.match(o) for o in origins):
        raise SettingsError(
            "MARKETPULSE_API_CORS_ORIGINS is not `*` or a comma-separated list of origins"
            " such as https://dashboard.example.com"
        )
    return origins


def _number(text: str | None, origin: str, default: int, low: int, high: int) -> int:
    return default if text is None else whole_variable(text, origin, low, high)

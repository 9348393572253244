"""How MarketPulse talks to a market-data vendor over HTTP: as a good API citizen.

Every request has a timeout; timeouts, connection errors, 429 (honouring `Retry-After`) and 5xx
are retried with exponential backoff and jitter (tenacity); requests are spaced by a minimum
interval; a final failure is one line naming the vendor, the symbol, the status and the URL.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import pandas as pd
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from marketpulse_pipeline.calendar import SessionWindow
from marketpulse_pipeline.sources.base import (
    BAR_DTYPES,
    CORPORATE_ACTION_DTYPES,
    RAW_TEXT_DTYPES,
    PriceSource,
    SourceError,
    conform,
)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_OK = frozenset({200})
MAX_RETRY_AFTER = 60.0  # seconds: a vendor asking for longer fails the run instead


class VendorError(SourceError):
    """A vendor could not give what was asked; the message is one line for the user."""


class _Retryable(Exception):
    """An answer worth asking again for (429 or 5xx)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    backoff: float = 1.0
    """First wait, in seconds; each later one doubles, with up to as much again of jitter."""
    timeout: float = 20.0
    min_interval: float = 0.5
    """Seconds between two requests to the vendor: a bounded request rate."""


class VendorClient:
    """GET requests to one vendor, retried and spaced as `policy` says."""

    def __init__(self, vendor: str, policy: RetryPolicy | None = None) -> None:
        self.vendor = vendor
        self.policy = policy or RetryPolicy()
        self._http = httpx.Client(
            timeout=self.policy.timeout,
            follow_redirects=True,
            headers={"User-Agent": "marketpulse (+https://github.com/marketpulse)"},
        )
        self._last_request = 0.0

    def get_text(
        self, url: str, params: dict[str, str], symbol: str, accept: frozenset[int] = _OK
    ) -> str:
        """The body of an answer whose status is in `accept` (a vendor may explain an unknown
        symbol in a 404's body); `VendorError` for any other, or once the retries are spent."""
        backoff = wait_exponential_jitter(
            multiplier=self.policy.backoff, jitter=self.policy.backoff, max=30.0
        )

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, _Retryable):
                asked = _retry_after(error.response)
                if asked is not None:
                    return asked
            return backoff(state)

        retrying = Retrying(
            stop=stop_after_attempt(self.policy.attempts),
            wait=wait,
            retry=retry_if_exception_type((_Retryable, httpx.TransportError)),
            reraise=True,
        )
        try:
            response = retrying(self._get, url, params)
        except _Retryable as error:
            raise self._failure(symbol, error.response.request.url, error, retrying) from None
        except httpx.TransportError as error:
            raise self._failure(symbol, error.request.url, error, retrying) from None
        if response.status_code not in accept:
            status = f"HTTP {response.status_code}"
            raise self._failure(symbol, response.request.url, status, retrying)
        return response.text

    def _get(self, url: str, params: dict[str, str]) -> httpx.Response:
        wait = self._last_request + self.policy.min_interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_request = time.monotonic()
        response = self._http.get(url, params=params)
        if response.status_code in RETRY_STATUSES:
            raise _Retryable(response)
        return response

    def _failure(
        self, symbol: str, url: httpx.URL, cause: object, retrying: Retrying
    ) -> VendorError:
        reason = type(cause).__name__ if isinstance(cause, httpx.TransportError) else cause
        shown = url.copy_with(username=None, password=None)  # never a credential
        attempts = retrying.statistics.get("attempt_number", 1)
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return VendorError(f"{self.vendor}: {symbol}: {reason} from {shown}{tries}")

    def close(self) -> None:
        self._http.close()


def _retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (a number; an HTTP date is left to the backoff), capped."""
    text = response.headers.get("Retry-After", "").strip()
    if not text.replace(".", "", 1).isdigit():
        return None
    return min(float(text), MAX_RETRY_AFTER)


class VendorSource(PriceSource):
    """A market-data vendor over HTTP: one request per symbol, through a `VendorClient`.

    One answer gives a symbol's bars and its corporate actions: `corporate_actions` reuses the
    answer `bars` got for the same symbol and window instead of asking again."""

    def __init__(self, base_url: str, client: VendorClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client or VendorClient(self.name)
        self._actions: dict[tuple[str, SessionWindow], pd.DataFrame] = {}

    def bars(self, symbols: Sequence[str], window: SessionWindow) -> pd.DataFrame:
        frames = [self._answer(symbol, window) for symbol in symbols]
        return conform(pd.concat(frames) if frames else pd.DataFrame(), BAR_DTYPES, RAW_TEXT_DTYPES)

    def corporate_actions(self, symbols: Sequence[str], window: SessionWindow) -> pd.DataFrame:
        for symbol in symbols:
            if (symbol, window) not in self._actions:
                self._answer(symbol, window)
        frames = [self._actions[(symbol, window)] for symbol in symbols]
        return conform(pd.concat(frames) if frames else pd.DataFrame(), CORPORATE_ACTION_DTYPES)

    def _answer(self, symbol: str, window: SessionWindow) -> pd.DataFrame:
        bars, actions = self.symbol_answer(symbol, window)
        self._actions[(symbol, window)] = actions
        return bars

    @abstractmethod
    def symbol_answer(
        self, symbol: str, window: SessionWindow
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """One symbol's raw bars inside `window`, with each value's text as the vendor sent it,
        and its splits and dividends there (`CORPORATE_ACTION_DTYPES`; empty if the vendor
        reports none)."""

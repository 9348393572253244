"""Daily bars from Yahoo Finance's chart API:
`GET {base}/v8/finance/chart/{SYMBOL}?period1=…&period2=…&interval=1d&events=div,splits`.

The answer is JSON: `timestamp` (each session's open, in Unix seconds) and
`indicators.quote[0]` with `open`, `high`, `low`, `close`, `volume` (null where Yahoo has no
value). Yahoo's quote prices and volumes are split-adjusted, not dividend-adjusted; `adjclose`
(dividends too) is not used. `events.splits` (`numerator`/`denominator`) and
`events.dividends` (`amount`) become corporate actions. Missing values go to the quality gate
with their text (`null`); an unknown symbol, an HTML page, a cut-short answer or an event
without a usable ratio or amount is an error naming the symbol.
"""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pandas as pd

from marketpulse_pipeline.calendar import MARKET_TIMEZONE, SessionWindow
from marketpulse_pipeline.sources.base import BAR_VALUES, CORPORATE_ACTION_DTYPES, conform
from marketpulse_pipeline.sources.http import VendorError, VendorSource


def yahoo_ticker(symbol: str) -> str:
    """A watchlist symbol as Yahoo spells it: `BRK.B` → `BRK-B`; indexes (`^GSPC`) unchanged."""
    return symbol.replace(".", "-")


class YahooSource(VendorSource):
    """Bars from Yahoo Finance's chart API, one request per symbol."""

    name = "yahoo"

    def symbol_answer(
        self, symbol: str, window: SessionWindow
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        ticker = yahoo_ticker(symbol)
        url = f"{self.base_url}/v8/finance/chart/{ticker}"
        new_york = ZoneInfo(MARKET_TIMEZONE)
        first = dt.datetime.combine(window.start, dt.time(), new_york)
        after = dt.datetime.combine(window.end + dt.timedelta(days=1), dt.time(), new_york)
        params = {
            "period1": str(int(first.timestamp())),
            "period2": str(int(after.timestamp())),
            "interval": "1d",
            "events": "div,splits",
        }
        body = self.client.get_text(url, params, symbol, accept=frozenset({200, 404}))
        result = _chart_result(body, symbol)
        zone = result.get("meta", {}).get("exchangeTimezoneName") or MARKET_TIMEZONE
        return (
            _bars(result, symbol, ticker, window, zone),
            _actions(result.get("events") or {}, symbol, ticker, window, zone),
        )


def _chart_result(body: str, symbol: str) -> dict:
    """The one chart result in Yahoo's answer, or an error saying why there is none."""
    if body.lstrip()[:1] == "<":
        raise VendorError(f"yahoo: {symbol}: answered with an HTML page, not JSON")
    try:
        chart = json.loads(body)["chart"]
    except (ValueError, KeyError, TypeError):
        raise VendorError(f"yahoo: {symbol}: the answer is not chart JSON (cut short?)") from None
    error = chart.get("error")
    if error:
        reason = error.get("description") or error.get("code") if isinstance(error, dict) else error
        raise VendorError(f"yahoo: {symbol}: {reason}")
    results = chart.get("result") or []
    if not results:
        raise VendorError(f"yahoo: {symbol}: no chart result")
    return results[0]


def _session_days(stamps: list, zone: str) -> pd.DatetimeIndex:
    """Unix seconds as the exchange's calendar days."""
    days = pd.to_datetime(stamps, unit="s", utc=True).tz_convert(zone).tz_localize(None)
    return days.normalize().astype("datetime64[ns]")


def _inside(frame: pd.DataFrame, window: SessionWindow) -> pd.DataFrame:
    return frame[frame["timestamp"].between(pd.Timestamp(window.start), pd.Timestamp(window.end))]


def _actions(
    events: dict, symbol: str, ticker: str, window: SessionWindow, zone: str
) -> pd.DataFrame:
    """Splits (new shares per old share) and dividends (cash per share) from the answer."""
    rows = []
    for stamp, split in (events.get("splits") or {}).items():
        try:
            ratio = float(split["numerator"]) / float(split["denominator"])
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            ratio = float("nan")
        if not ratio > 0:
            raise VendorError(f"yahoo: {symbol}: a split without a usable ratio: {split}")
        rows.append((stamp, "split", ratio))
    for stamp, dividend in (events.get("dividends") or {}).items():
        try:
            amount = float(dividend["amount"])
        except (KeyError, TypeError, ValueError):
            amount = float("nan")
        if not amount > 0:
            raise VendorError(f"yahoo: {symbol}: a dividend without a usable amount: {dividend}")
        rows.append((stamp, "dividend", amount))
    stamps = [int(stamp) for stamp, _, _ in rows]
    frame = pd.DataFrame(
        {
            "symbol": symbol,
            "timestamp": _session_days(stamps, zone),
            "kind": [kind for _, kind, _ in rows],
            "value": [value for _, _, value in rows],
            "source_ref": [f"yahoo:{ticker}:{kind}:{stamp}" for stamp, kind, _ in rows],
        }
    )
    return conform(_inside(frame, window), CORPORATE_ACTION_DTYPES)


def _bars(result: dict, symbol: str, ticker: str, window: SessionWindow, zone: str) -> pd.DataFrame:
    stamps = result.get("timestamp") or []
    quotes = (result.get("indicators", {}).get("quote") or [{}])[0]
    columns = {name: quotes.get(name) or [None] * len(stamps) for name in BAR_VALUES}
    if any(len(values) != len(stamps) for values in columns.values()):
        raise VendorError(f"yahoo: {symbol}: quote lists and timestamps differ in length")
    frame = pd.DataFrame(
        {
            "symbol": symbol,
            "timestamp": _session_days(stamps, zone),
            **{
                name: pd.to_numeric(pd.Series(values, dtype="object"))
                for name, values in columns.items()
            },
            "source_ref": [f"yahoo:{ticker}:{stamp}" for stamp in stamps],
            **{f"{name}_text": [json.dumps(v) for v in values] for name, values in columns.items()},
        }
    )
    return _inside(frame, window)

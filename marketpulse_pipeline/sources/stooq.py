"""Daily bars from Stooq's keyless CSV download: `GET {base}/q/d/l/?s=aapl.us&i=d&d1=…&d2=…`.

The answer has the Stooq layout the csv source reads (`Date,Open,High,Low,Close,Volume`), so it
goes through the same parser: unreadable values are refused with their line, missing ones go to
the quality gate. Stooq's bars are split-adjusted; it answers "No data" for an unknown symbol.
"""

from __future__ import annotations

import pandas as pd

from marketpulse_pipeline.calendar import SessionWindow
from marketpulse_pipeline.sources.base import CORPORATE_ACTION_DTYPES, conform
from marketpulse_pipeline.sources.csv_files import parse_price_csv
from marketpulse_pipeline.sources.http import VendorError, VendorSource

INDEXES = {"^GSPC": "^spx", "^DJI": "^dji", "^IXIC": "^ndq", "^NDX": "^ndx"}
"""Index symbols as Stooq spells them."""


def stooq_ticker(symbol: str) -> str:
    """A watchlist symbol as Stooq spells it: `AAPL` → `aapl.us`, `BRK.B` → `brk-b.us`."""
    if symbol in INDEXES:
        return INDEXES[symbol]
    if symbol.startswith("^"):
        return symbol.lower()
    return f"{symbol.lower().replace('.', '-')}.us"


class StooqSource(VendorSource):
    """Bars of US listings from Stooq, one request per symbol."""

    name = "stooq"

    def symbol_answer(
        self, symbol: str, window: SessionWindow
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Stooq's CSV has bars only: its splits are in the prices, not reported as events."""
        ticker = stooq_ticker(symbol)
        url = f"{self.base_url}/q/d/l/"
        params = {
            "s": ticker,
            "i": "d",
            "d1": f"{window.start:%Y%m%d}",
            "d2": f"{window.end:%Y%m%d}",
        }
        body = self.client.get_text(url, params, symbol)
        head = body.lstrip()[:200].lower()
        if head.startswith("no data"):
            raise VendorError(
                f"stooq: {symbol}: no data for {ticker} in {window} (an unknown symbol?)"
            )
        if head.startswith(("<", "<!doctype")):
            raise VendorError(f"stooq: {symbol}: answered with an HTML page, not CSV ({url})")
        bars = parse_price_csv(body, f"stooq {ticker}", f"stooq:{ticker}", symbol, window)
        return bars, conform(pd.DataFrame(), CORPORATE_ACTION_DTYPES)

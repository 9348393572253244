"""Real daily bars that work offline: the public-domain Quandl WIKI series (2000 to 2013-03-01)
of AAPL, FB, GOOG, IBM and MSFT shipped in the optional `bokeh-sampledata` package
(`pip install -e ".[sample]"`)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import pandas as pd

from marketpulse_pipeline.calendar import SessionWindow
from marketpulse_pipeline.sources.base import BAR_DTYPES, PriceSource, conform


@cache
def _sample_bars() -> pd.DataFrame:
    try:
        from bokeh_sampledata import stocks
    except ImportError:
        raise RuntimeError(
            "the sample source needs the optional package bokeh-sampledata:"
            ' pip install -e ".[sample]"'
        ) from None
    data = stocks.data.rename(columns={"ticker": "symbol", "date": "timestamp"})
    return data.assign(source_ref="bokeh-sampledata stocks (Quandl WIKI)")


class SampleSource(PriceSource):
    """Unadjusted bars of the sample tickers; asking for another symbol is an error."""

    name = "sample"

    def bars(self, symbols: Sequence[str], window: SessionWindow) -> pd.DataFrame:
        data = _sample_bars()
        unknown = sorted(set(symbols) - set(data["symbol"]))
        if unknown:
            raise ValueError(
                f"the sample source has no data for {', '.join(unknown)};"
                f" it holds {', '.join(sorted(data['symbol'].unique()))}"
            )
        inside = data["symbol"].isin(symbols) & data["timestamp"].between(
            pd.Timestamp(window.start), pd.Timestamp(window.end)
        )
        return conform(data[inside], BAR_DTYPES)

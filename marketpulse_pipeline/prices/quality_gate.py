"""The quality gate between a price source and `stock_prices`.

Every raw bar is either stored or rejected with the reason — never dropped — so that
rows in = rows stored + rows rejected. A rejected row keeps the source's own text of each value
(`null` stays `null`, `2409105` stays `2409105`), so the quarantine shows what was delivered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa

from marketpulse_pipeline.calendar import SessionWindow, inside_windows, nyse
from marketpulse_pipeline.schemas import StockPrices, failure_reasons
from marketpulse_pipeline.sources.base import BAR_VALUES

VOLUME_LIMIT = 2.0**63
"""Volumes must be whole and below this to fit `stock_prices.volume` (a bigint)."""


@dataclass(frozen=True)
class GateResult:
    stored: pd.DataFrame
    """Valid bars in the `StockPrices` shape."""
    rejected: pd.DataFrame
    """Refused bars: the source's text of each value, `source`, `source_ref` and `reason`."""


def _arrival_schema() -> pa.DataFrameSchema:
    """`StockPrices` as checked on arrival: volume still a float (whether it is a whole number
    that fits is checked by `_volume_reasons`, quoting the source's text), and every bar dated
    on an NYSE session."""
    schema = StockPrices.to_schema().update_column(
        "volume", dtype="float64", checks=[pa.Check.ge(0)]
    )
    schema.checks = [
        *schema.checks,
        pa.Check(lambda df: df["timestamp"].isin(nyse().sessions), error="not an NYSE session"),
    ]
    return schema


ARRIVAL_SCHEMA = _arrival_schema()
_STORED_COLUMNS = list(ARRIVAL_SCHEMA.columns)


def gate_bars(raw: pd.DataFrame, windows: Mapping[str, SessionWindow], source: str) -> GateResult:
    """Split the raw bars of `windows` into stored and rejected rows.

    `raw` has the `BAR_DTYPES` columns and, optionally, the source's text of each value
    (`RAW_TEXT_DTYPES`); without it a rejected row shows the parsed value as text.
    """
    arrived = raw.reset_index(drop=True).assign(source=source)
    _check_requested(arrived, windows, source)
    reasons = (
        pd.concat(
            [
                failure_reasons(ARRIVAL_SCHEMA, arrived[_STORED_COLUMNS]),
                _volume_reasons(arrived),
            ]
        )
        .groupby(level=0)
        .agg("; ".join)
    )
    refused = arrived.index.isin(reasons.index)

    stored = arrived.loc[~refused, _STORED_COLUMNS]
    stored = StockPrices.validate(stored.astype({"volume": "Int64"}).reset_index(drop=True))

    refusals = arrived.loc[refused]
    rejected = refusals[["symbol", "timestamp", "source", "source_ref"]].assign(
        **{column: _source_text(refusals, column) for column in BAR_VALUES},
        reason=reasons,
    )
    return GateResult(stored=stored, rejected=rejected.reset_index(drop=True))


def _volume_reasons(arrived: pd.DataFrame) -> pd.Series:
    """Why a volume cannot be stored as a 64-bit count (`1e30`, `2.5`, `inf`), per row.

    Checked here rather than by pandera so the reason quotes the source's text, not the float
    it was parsed into (`9999999999999999999` would read `1e+19`). Missing and negative volumes
    are left to the schema's own reasons.
    """
    volume = arrived["volume"]
    whole = np.isfinite(volume) & (volume == np.floor(volume)) & (volume < VOLUME_LIMIT)
    bad = volume.notna() & ~whole
    text = _source_text(arrived[bad], "volume")
    return "volume must be a whole number below 2^63 (got " + text.astype(str) + ")"


def _check_requested(
    arrived: pd.DataFrame, windows: Mapping[str, SessionWindow], source: str
) -> None:
    """A source must answer what was asked: other symbols or days are a bug in the source."""
    stray = ~inside_windows(arrived, windows)
    if stray.any():
        row = arrived[stray].iloc[0]
        raise ValueError(
            f"source {source!r} returned a bar it was not asked for: {row['symbol']}"
            f" {row['timestamp']} ({row['source_ref']})"
        )


def _source_text(arrived: pd.DataFrame, column: str) -> pd.Series:
    """`column` as the source wrote it, else the parsed value as text; None when neither exists.

    Built as plain Python objects: pandas would turn the None into NaN in a text column.
    """
    written = arrived.get(f"{column}_text", pd.Series(None, index=arrived.index, dtype=object))
    texts = [
        text if isinstance(text, str) else None if pd.isna(value) else str(value)
        for text, value in zip(written, arrived[column], strict=True)
    ]
    return pd.Series(texts, index=arrived.index, dtype=object)

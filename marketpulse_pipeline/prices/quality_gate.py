"""The quality gate between a price source and `stock_prices`.

Every raw bar is either stored or rejected with the reason — never dropped — so that
rows in = rows stored + rows rejected. Sessions of the window left without a valid bar are
reported, because a gap would corrupt every rolling window computed downstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa

from marketpulse_pipeline.calendar import SessionWindow, inside_windows, missing_sessions, nyse
from marketpulse_pipeline.schemas import StockPrices, failure_reasons

_VALUE_COLUMNS = ["open", "high", "low", "close", "volume"]


@dataclass(frozen=True)
class GateResult:
    stored: pd.DataFrame
    """Valid bars in the `StockPrices` shape."""
    rejected: pd.DataFrame
    """Refused bars: raw values as text, `source`, `source_ref` and `reason`."""
    missing: pd.DataFrame
    """`symbol`, `timestamp` of each session in the window that has no valid bar."""


def _arrival_schema() -> pa.DataFrameSchema:
    """`StockPrices` as checked on arrival: volume still a float that must be whole, and every
    bar dated on an NYSE session."""
    schema = StockPrices.to_schema().update_column(
        "volume",
        dtype="float64",
        checks=[
            pa.Check.ge(0),
            pa.Check(lambda v: np.isfinite(v) & (v == np.floor(v)), error="must be a whole number"),
        ],
    )
    schema.checks = [
        *schema.checks,
        pa.Check(lambda df: df["timestamp"].isin(nyse().sessions), error="not an NYSE session"),
    ]
    return schema


ARRIVAL_SCHEMA = _arrival_schema()
_STORED_COLUMNS = list(ARRIVAL_SCHEMA.columns)


def gate_bars(raw: pd.DataFrame, windows: Mapping[str, SessionWindow], source: str) -> GateResult:
    """Split the raw bars of `windows` into stored and rejected rows, and list the gaps."""
    arrived = raw.reset_index(drop=True).assign(source=source)
    _check_requested(arrived, windows, source)
    reasons = failure_reasons(ARRIVAL_SCHEMA, arrived[_STORED_COLUMNS])
    refused = arrived.index.isin(reasons.index)

    stored = arrived.loc[~refused, _STORED_COLUMNS]
    stored = StockPrices.validate(stored.astype({"volume": "Int64"}).reset_index(drop=True))

    rejected = arrived.loc[refused, ["symbol", "timestamp", "source", "source_ref"]].assign(
        **{column: _as_text(arrived.loc[refused, column]) for column in _VALUE_COLUMNS},
        reason=reasons,
    )
    return GateResult(
        stored=stored,
        rejected=rejected.reset_index(drop=True),
        missing=missing_sessions(stored, windows),
    )


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


def _as_text(values: pd.Series) -> pd.Series:
    """Raw values as text for the quarantine table; missing stays NULL."""
    return values.map(lambda v: None if pd.isna(v) else str(v)).astype("object")

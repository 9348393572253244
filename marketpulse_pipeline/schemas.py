"""Pandera models of the pipeline's tables.

Each model validates a frame before it is written, and is also the source of the column schema
the Dagster UI shows for the asset, so documentation and enforcement cannot drift apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from marketpulse_pipeline.detectors import ANOMALY_TYPES, METHODS

_PRICE_FIELDS = ("open", "high", "low", "close")

PG_TYPE = "pg_type"
"""Field metadata key: the column's PostgreSQL type where the pandas dtype does not say it
(int4 rather than int8, date, jsonb, text[]); `storage.tables.Table` reads it."""


def _pg(pg_type: str) -> dict[str, str]:
    return {PG_TYPE: pg_type}


class StockPrices(pa.DataFrameModel):
    """One validated daily bar per symbol and NYSE session."""

    symbol: Series[str] = pa.Field(description="Ticker symbol; the asset partition")
    timestamp: Series[pa.DateTime] = pa.Field(metadata=_pg("date"), description="NYSE session date")
    open: Series[float] = pa.Field(gt=0, description="Opening price")
    high: Series[float] = pa.Field(gt=0, description="Highest price of the session")
    low: Series[float] = pa.Field(gt=0, description="Lowest price of the session")
    close: Series[float] = pa.Field(gt=0, description="Closing price")
    volume: Series[pd.Int64Dtype] = pa.Field(ge=0, description="Shares traded (a whole number)")
    source: Series[str] = pa.Field(description="Price source the bar came from")

    @pa.check(*_PRICE_FIELDS, name="finite", error="must be a finite number")
    def finite(cls, values: Series[float]) -> Series[bool]:
        return pd.Series(np.isfinite(values), index=values.index)

    @pa.dataframe_check(
        name="ohlc_consistent",
        error="high/low inconsistent with open/close",
        description="low <= min(open, close) and high >= max(open, close)",
    )
    def ohlc_consistent(cls, df: pd.DataFrame) -> Series[bool]:
        body_low = df[["open", "close"]].min(axis=1)
        body_high = df[["open", "close"]].max(axis=1)
        return (df["low"] <= body_low) & (df["high"] >= body_high)

    class Config:
        unique = ["symbol", "timestamp"]  # noqa: RUF012 - pandera reads a plain class attribute
        strict = True


class InjectedAnomalies(pa.DataFrameModel):
    """Ground truth: an anomaly the synthetic source planted."""

    symbol: Series[str] = pa.Field(description="Ticker symbol; the asset partition")
    timestamp: Series[pa.DateTime] = pa.Field(
        metadata=_pg("date"), description="First NYSE session the anomaly affects"
    )
    kind: Series[str] = pa.Field(
        isin=[
            "price_shock_up",
            "price_shock_down",
            "volume_spike",
            "trend_break",
            "intraday_crash",
        ],
        description="What was injected",
    )
    magnitude: Series[float] = pa.Field(
        description="Size: percent move for price anomalies, volume multiple for volume spikes"
    )
    duration: Series[int] = pa.Field(
        ge=1, metadata=_pg("int4"), description="Sessions the anomaly lasts"
    )

    class Config:
        unique = ["symbol", "timestamp", "kind"]  # noqa: RUF012
        strict = True


class CorporateActions(pa.DataFrameModel):
    """A split or dividend the source reported. Stored prices are already adjusted for splits
    (history is restated when one arrives); dividends are recorded, returns are price returns."""

    symbol: Series[str] = pa.Field(description="Ticker symbol; the asset partition")
    timestamp: Series[pa.DateTime] = pa.Field(metadata=_pg("date"), description="Ex-date")
    kind: Series[str] = pa.Field(isin=["split", "dividend"], description="split or dividend")
    value: Series[float] = pa.Field(
        gt=0,
        description="Split: new shares per old share (4 for 4:1, 0.1 for 1:10); dividend: cash"
        " per share",
    )
    source: Series[str] = pa.Field(description="Price source that reported it")
    source_ref: Series[str] = pa.Field(description="Where in the source: a vendor's event, a seed")

    class Config:
        unique = ["symbol", "timestamp", "kind"]  # noqa: RUF012
        strict = True


class RejectedPrices(pa.DataFrameModel):
    """A bar the quality gate refused, kept as the source delivered it: values are text, since
    what failed may not parse as a number at all."""

    symbol: Series[str] = pa.Field(description="Ticker symbol; the asset partition")
    timestamp: Series[pa.DateTime] = pa.Field(metadata=_pg("date"), description="Day of the bar")
    open: Series[str] = pa.Field(nullable=True, coerce=True, description="Opening price, as sent")
    high: Series[str] = pa.Field(nullable=True, coerce=True, description="Highest price, as sent")
    low: Series[str] = pa.Field(nullable=True, coerce=True, description="Lowest price, as sent")
    close: Series[str] = pa.Field(nullable=True, coerce=True, description="Closing price, as sent")
    volume: Series[str] = pa.Field(nullable=True, coerce=True, description="Volume, as sent")
    source: Series[str] = pa.Field(description="Price source the bar came from")
    source_ref: Series[str] = pa.Field(description="Where in the source: a file and line, a seed")
    reason: Series[str] = pa.Field(description="Why the gate refused it")
    run_id: Series[str] = pa.Field(description="Dagster run that refused it")

    class Config:
        strict = True


class PriceFeatures(pa.DataFrameModel):
    """Features of one symbol and session; NULL (NaN) while an indicator warms up."""

    symbol: Series[str] = pa.Field(description="Ticker symbol; the asset partition")
    timestamp: Series[pa.DateTime] = pa.Field(metadata=_pg("date"), description="NYSE session date")
    return_pct: Series[float] = pa.Field(nullable=True, description="Close-to-close return, %")
    log_return: Series[float] = pa.Field(nullable=True, description="ln(close / previous close)")
    volume_change_pct: Series[float] = pa.Field(
        nullable=True, description="Volume change vs the previous session, %"
    )
    range_pct: Series[float] = pa.Field(
        nullable=True, ge=0, description="(high - low) / previous close, %"
    )
    gap_pct: Series[float] = pa.Field(nullable=True, description="Open vs previous close, %")
    sma_20: Series[float] = pa.Field(nullable=True, gt=0, description="SMA of the last 20 closes")
    rsi_14: Series[float] = pa.Field(
        nullable=True, ge=0, le=100, description="RSI(14), Wilder smoothing (TA-Lib convention)"
    )
    bb_middle: Series[float] = pa.Field(nullable=True, description="Bollinger middle band: SMA(20)")
    bb_upper: Series[float] = pa.Field(nullable=True, description="middle + 2 population std")
    bb_lower: Series[float] = pa.Field(nullable=True, description="middle - 2 population std")
    bb_percent_b: Series[float] = pa.Field(
        nullable=True, description="(close - lower) / (upper - lower)"
    )
    rsi_avg_gain: Series[float] = pa.Field(
        nullable=True, ge=0, description="Wilder average gain (RSI state, for resuming)"
    )
    rsi_avg_loss: Series[float] = pa.Field(
        nullable=True, ge=0, description="Wilder average loss (RSI state, for resuming)"
    )

    @pa.dataframe_check(
        name="bands_ordered",
        error="Bollinger bands out of order",
        description="bb_lower <= bb_middle <= bb_upper",
    )
    def bands_ordered(cls, df: pd.DataFrame) -> Series[bool]:
        warm_up = df[["bb_lower", "bb_middle", "bb_upper"]].isna().any(axis=1)
        return warm_up | ((df["bb_lower"] <= df["bb_middle"]) & (df["bb_middle"] <= df["bb_upper"]))

    class Config:
        unique = ["symbol", "timestamp"]  # noqa: RUF012
        strict = True


class Anomalies(pa.DataFrameModel):
    """An anomaly one detection method found on one symbol and session."""

    id: Series[int] = pa.Field(
        unique=True, description="Stable id: hash of symbol, day, method, type"
    )
    symbol: Series[str] = pa.Field(description="Ticker symbol; the asset partition")
    timestamp: Series[pa.DateTime] = pa.Field(metadata=_pg("date"), description="NYSE session date")
    anomaly_type: Series[str] = pa.Field(isin=list(ANOMALY_TYPES), description="What was found")
    method: Series[str] = pa.Field(isin=list(METHODS), description="Detection method")
    score: Series[float] = pa.Field(ge=0, description="Method-specific strength (see README)")
    severity: Series[float] = pa.Field(
        ge=0, description="Score relative to the method's threshold: 1 = at the threshold"
    )
    details: Series[str] = pa.Field(
        metadata=_pg("jsonb"), description="JSON: the value, baseline, bound and direction"
    )
    p_value: Series[float] = pa.Field(
        ge=0,
        le=1,
        nullable=True,
        description="Tail probability: share of the symbol's previous year scoring at least as"
        " high (comparable across methods and symbols); null with under 60 sessions of it",
    )

    @pa.check("score", "severity", name="finite", error="must be a finite number")
    def finite(cls, values: Series[float]) -> Series[bool]:
        return pd.Series(np.isfinite(values), index=values.index)

    class Config:
        unique = ["symbol", "timestamp", "method", "anomaly_type"]  # noqa: RUF012
        strict = True


class AnomalyConsensus(pa.DataFrameModel):
    """How the methods agree on one symbol and session with at least one anomaly."""

    symbol: Series[str] = pa.Field(description="Ticker symbol; the asset partition")
    timestamp: Series[pa.DateTime] = pa.Field(metadata=_pg("date"), description="NYSE session date")
    votes: Series[int] = pa.Field(
        ge=1, le=len(METHODS), metadata=_pg("int4"), description="Methods that flagged the day"
    )
    methods: Series[object] = pa.Field(
        metadata=_pg("text[]"), description="Which methods, alphabetically"
    )
    severity: Series[float] = pa.Field(
        ge=0, description="Sum over the voting methods of their strongest severity"
    )
    strongest_type: Series[str] = pa.Field(
        isin=list(ANOMALY_TYPES), description="Anomaly type with the highest severity"
    )
    strongest_method: Series[str] = pa.Field(isin=list(METHODS), description="Its method")
    is_consensus: Series[bool] = pa.Field(description="votes >= the configured min_votes")

    class Config:
        unique = ["symbol", "timestamp"]  # noqa: RUF012
        strict = True


class DetectionQuality(pa.DataFrameModel):
    """Quality of one method (or the consensus) against the injected ground truth."""

    method: Series[str] = pa.Field(
        isin=[*METHODS, "consensus", "alert"],
        description="Detection method, the consensus, or the alert flag",
    )
    kind: Series[str] = pa.Field(description="Injected anomaly kind, or 'all'")
    detections: Series[int] = pa.Field(
        ge=0, metadata=_pg("int4"), description="Symbol-days the method flagged"
    )
    events: Series[int] = pa.Field(
        ge=0, metadata=_pg("int4"), description="Anomalies injected (of this kind)"
    )
    true_positives: Series[int] = pa.Field(
        ge=0, metadata=_pg("int4"), description="Detections within 1 session of one"
    )
    events_found: Series[int] = pa.Field(
        ge=0, metadata=_pg("int4"), description="Injected anomalies detected"
    )
    precision: Series[float] = pa.Field(nullable=True, ge=0, le=1, description="TP / detections")
    recall: Series[float] = pa.Field(nullable=True, ge=0, le=1, description="Found / injected")
    f1: Series[float] = pa.Field(nullable=True, ge=0, le=1, description="Harmonic mean of both")
    flag_rate: Series[float] = pa.Field(
        nullable=True, ge=0, le=1, description="Share of symbol-days flagged"
    )
    labelled: Series[int] = pa.Field(
        ge=0, metadata=_pg("int4"), description="Anomalies of the method users labelled"
    )
    false_positive_share: Series[float] = pa.Field(
        nullable=True, ge=0, le=1, description="Share of those labelled false positive"
    )
    recall_at_0_5pct: Series[float] = pa.Field(
        nullable=True, ge=0, le=1, description="Recall of the strongest 0.5 % of symbol-days"
    )
    recall_at_1pct: Series[float] = pa.Field(
        nullable=True, ge=0, le=1, description="Recall of the strongest 1 % of symbol-days"
    )
    recall_at_2pct: Series[float] = pa.Field(
        nullable=True, ge=0, le=1, description="Recall of the strongest 2 % of symbol-days"
    )

    class Config:
        unique = ["method", "kind"]  # noqa: RUF012
        strict = True


_REASONS = {
    "not_nullable": "{column} is missing",
    "greater_than(0)": "{column} must be > 0 (got {value})",
    "greater_than_or_equal_to(0)": "{column} must be >= 0 (got {value})",
    "multiple_fields_uniqueness": "duplicate bar for this symbol and day",
}


def failure_reasons(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> pd.Series:
    """Why each failing row of `frame` breaks `schema`: a readable text per index label."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        return _reasons(schema, errors)
    return pd.Series(dtype="str")


def _reasons(schema: pa.DataFrameSchema, errors: pa.errors.SchemaErrors) -> pd.Series:
    cases = errors.failure_cases.dropna(subset=["index"])
    # Pandera reports a check by its error text when it has one, else by its name.
    frame_checks = {check.error or check.name for check in schema.checks}
    texts = []
    for column, check, value in zip(
        cases["column"], cases["check"], cases["failure_case"], strict=True
    ):
        if check in frame_checks:  # a whole-frame check names every column of the row: say it once
            texts.append(check)
        elif check in _REASONS:
            texts.append(_REASONS[check].format(column=column, value=value))
        else:
            texts.append(f"{column}: {check} (got {value})")
    reasons = pd.DataFrame({"index": cases["index"].astype("int64"), "reason": texts})
    return (
        reasons.drop_duplicates()
        .sort_values(["index", "reason"])
        .groupby("index")["reason"]
        .agg("; ".join)
    )


class AlertScores(pa.DataFrameModel):
    """The alert layer's verdict on one symbol and session: each signal's tail probability
    against the symbol's own past, their combination, and whether it is an alert."""

    symbol: Series[str] = pa.Field(description="Ticker symbol; the asset partition")
    timestamp: Series[pa.DateTime] = pa.Field(metadata=_pg("date"), description="NYSE session date")
    p_value: Series[float] = pa.Field(
        ge=0,
        le=1,
        nullable=True,
        description="Combined probability (harmonic mean of the signals'); NULL while warming up",
    )
    is_alert: Series[bool] = pa.Field(description="p_value at most the configured budget")
    market_wide: Series[bool] = pa.Field(
        description="An unusual share of the watchlist moved the same way that day"
    )
    return_pct: Series[float] = pa.Field(nullable=True, description="Close-to-close return, %")
    p_return: Series[float] = pa.Field(ge=0, le=1, nullable=True, description="Return vs its year")
    p_volatility_adjusted: Series[float] = pa.Field(
        ge=0, le=1, nullable=True, description="Return over its EWMA volatility"
    )
    p_range: Series[float] = pa.Field(
        ge=0, le=1, nullable=True, description="High/low range vs its year's median"
    )
    p_volume: Series[float] = pa.Field(
        ge=0, le=1, nullable=True, description="Volume beyond what the move explains"
    )
    p_market_relative: Series[float] = pa.Field(
        ge=0, le=1, nullable=True, description="Return the benchmark does not explain"
    )
    methods: Series[object] = pa.Field(
        metadata=_pg("text[]"), description="Signals at p <= 0.01, in signal order"
    )
    details: Series[str] = pa.Field(
        nullable=True,
        metadata=_pg("jsonb"),
        description="JSON for alerts: each signal's statistic; else NULL",
    )
    id: Series[int] = pa.Field(
        unique=True, description="Stable id (a hash of symbol and day): what a label names"
    )

    class Config:
        unique = ["symbol", "timestamp"]  # noqa: RUF012
        strict = True


def empty(model: type[pa.DataFrameModel]) -> pd.DataFrame:
    """A frame with no rows and the model's columns and types: what a step that had nothing to
    compute writes."""
    columns = model.to_schema().columns
    return pd.DataFrame({name: pd.Series(dtype=str(c.dtype)) for name, c in columns.items()})


def validated(model: type[pa.DataFrameModel], frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` checked against `model` (once); a failure names the model, the count and sample
    reasons. For computed tables a failure is a bug, never data to quarantine: nothing is written.
    """
    schema = model.to_schema()
    try:
        return schema.validate(frame.reset_index(drop=True), lazy=True)
    except pa.errors.SchemaErrors as errors:
        reasons = _reasons(schema, errors)
        if not len(reasons):
            raise  # a whole-frame problem (a missing column, a wrong type) explains itself
        sample = "; ".join(f"row {i}: {reason}" for i, reason in reasons.head(5).items())
        raise ValueError(
            f"{model.__name__}: {len(reasons)} rows fail validation ({sample})"
        ) from None

"""What the routes answer, for the OpenAPI schema and `/docs`: one model per SQL function's row,
with the fields `marketpulse <command> --json` prints for the same row (the tests validate real
answers against these models)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from marketpulse_pipeline.storage.queries import LABELS

Label = Literal[LABELS]  # type: ignore[valid-type]  # the labels `marketpulse label` takes


def _example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


class Problem(BaseModel):
    """Every error: one line, never a traceback."""

    model_config = _example({"detail": "no prices stored for symbol 'NOPE'"})
    detail: str


class Anomaly(BaseModel):
    """A method's anomaly (`recent_anomalies`), with its latest label."""

    model_config = _example(
        {
            "id": 2052327011135684799,
            "symbol": "MSFT",
            "timestamp": "2025-12-31",
            "anomaly_type": "trend_break_up",
            "method": "moving_average",
            "score": 2.1469,
            "severity": 2.1469,
            "details": {"close": 96.49, "window": 20, "direction": "up", "deviation_pct": 10.7},
            "label": None,
            "note": None,
            "created_at": "2025-12-31T23:10:12.883766+00:00",
        }
    )
    id: int = Field(description="stable: a hash of symbol, day, method and type (64-bit)")
    symbol: str
    timestamp: dt.date = Field(description="the market session")
    anomaly_type: str
    method: str
    score: float
    severity: float = Field(description="1 means at the method's threshold")
    details: dict[str, Any] = Field(description="the numbers behind the decision")
    label: Label | None = None
    note: str | None = None
    created_at: dt.datetime


class Alert(BaseModel):
    """A session to act on (`recent_alerts`): the combined probability and its signals."""

    model_config = _example(
        {
            "id": 4211837766011921,
            "symbol": "TSLA",
            "timestamp": "2025-12-30",
            "p_value": 0.00021,
            "methods": ["return", "volatility_adjusted", "market_relative"],
            "market_wide": False,
            "return_pct": -24.1,
            "details": {"statistics": {"return": 6.86}},
            "label": None,
        }
    )
    id: int
    symbol: str
    timestamp: dt.date
    p_value: float
    methods: list[str]
    market_wide: bool
    return_pct: float | None
    details: dict[str, Any] | None
    label: Label | None = None


class StatRow(BaseModel):
    """A count of `anomaly_stats`: the total, then per method, symbol and type."""

    model_config = _example({"dimension": "method", "key": "zscore", "anomalies": 12})
    dimension: Literal["total", "method", "symbol", "type"]
    key: str
    anomalies: int


BAR_EXAMPLE = {
    "symbol": "AAPL",
    "timestamp": "2025-12-31",
    "open": 169.27,
    "high": 170.11,
    "low": 168.47,
    "close": 168.55,
    "volume": 35421709,
}


class Bar(BaseModel):
    """A stored daily bar (`price_history`)."""

    model_config = _example(BAR_EXAMPLE)
    symbol: str
    timestamp: dt.date
    open: float
    high: float
    low: float
    close: float
    volume: int


class LatestBar(Bar):
    """A symbol's latest bar (`latest_prices`), with where it came from."""

    model_config = _example(
        {
            **BAR_EXAMPLE,
            "source": "synthetic",
            "created_at": "2025-12-31T23:10:11.197843+00:00",
        }
    )
    source: str
    created_at: dt.datetime


class SymbolHealth(BaseModel):
    """A row of `pipeline_health` (what `marketpulse health --json` prints)."""

    model_config = ConfigDict(extra="allow")
    symbol: str
    prices_from: dt.date | None
    prices_through: dt.date | None
    expected_session: dt.date | None
    features_through: dt.date | None
    detectors_through: dt.date | None
    consensus_through: dt.date | None
    missing_sessions: int | None
    future_rows: int | None
    last_failure: str | None
    problems: str | None
    ok: bool


class Health(BaseModel):
    """The verdict of `marketpulse health`: `ok` (200) or `unhealthy` (503) with the reasons."""

    model_config = _example(
        {
            "status": "unhealthy",
            "detail": "QQQ: prices end 2025-12-29, expected 2025-12-30",
            "reasons": ["QQQ: prices end 2025-12-29, expected 2025-12-30"],
            "symbols": [],
        }
    )
    status: Literal["ok", "unhealthy"]
    detail: str | None = Field(description="the reasons in one line; null when ok")
    reasons: list[str]
    symbols: list[SymbolHealth]


def _storable(note: str | None) -> str | None:
    """PostgreSQL's text cannot hold NUL: refused here (422), not by the database (500)."""
    if note is not None and "\x00" in note:
        raise ValueError("a note cannot contain NUL characters")
    return note


class Feedback(BaseModel):
    """A label on an anomaly or an alert, as `marketpulse label ID --as LABEL --note NOTE`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"label": "false_positive", "note": "stock split"}]},
    )
    label: Label
    note: Annotated[str | None, AfterValidator(_storable)] = Field(default=None, max_length=2000)


class FeedbackRecorded(BaseModel):
    """The row appended to `anomaly_feedback`."""

    model_config = _example(
        {
            "anomaly_id": 2052327011135684799,
            "label": "false_positive",
            "note": "stock split",
            "labelled_by": "api",
            "labelled_at": "2025-12-31T23:00:00+00:00",
        }
    )
    anomaly_id: int
    label: Label
    note: str | None
    labelled_by: str
    labelled_at: dt.datetime

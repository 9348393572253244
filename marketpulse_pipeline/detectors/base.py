"""What every detection method shares: its shape, its output rows and stable anomaly ids.

A detector is pure: it gets the "market frame" — each symbol's prices joined with its features,
sorted by symbol and day, with enough history before the window — and returns anomaly rows for
the rows marked `in_window`. The baseline for day D is always built from rows before D.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import pickle
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from marketpulse_pipeline.calendar import session_offset
from marketpulse_pipeline.detectors.calibration import (
    METHOD_CALIBRATION_SESSIONS,
    METHOD_TAIL_SESSIONS,
    tail_probability,
)
from marketpulse_pipeline.features.rolling import per_group, shift


@dataclass(frozen=True)
class Detector:
    """A detection method: its parameters (a dataclass with defaults) and its pure function."""

    method: str
    params: type
    detect: Callable[..., pd.DataFrame]
    """(market frame, parameters[, ModelCache when `keeps_models`]) → anomaly rows."""
    history_start: Callable[[Any, dt.date], dt.date]
    """The first session whose rows the method needs to score a window starting on a day."""
    description: str
    anomaly_types: tuple[str, ...]
    benchmarks: Callable[[Any, Sequence[str]], dict[str, str]] | None = None
    """For a method that reads other symbols' prices: each symbol's benchmark. Its rows then
    read every symbol's prices (`MARKET_TARGETS`), and its market frame gets `benchmark` and
    `benchmark_return` (`with_benchmark_returns`)."""
    keeps_models: bool = False
    """For a method that fits models: `detect` takes a `ModelCache` third, and each symbol's
    newest model is kept in the database between runs."""


@dataclass
class ModelCache:
    """Each symbol's newest fitted model — the one that scores its coming sessions — so that a
    daily run scores without refitting. `stored` holds them as the database keeps them (refit
    point, version, payload), unpickled only when asked for with their version (a model's
    `version` names everything it was fitted from); `detect` puts each model it used in `used`.
    """

    stored: dict[str, tuple[pd.Timestamp, str, bytes]] = field(default_factory=dict)
    used: dict[str, tuple[pd.Timestamp, Any]] = field(default_factory=dict)
    reused: int = 0
    fitted: int = 0

    def get(self, symbol: str, point: pd.Timestamp, version: str) -> Any:
        found = self.stored.get(symbol)
        if found is None or found[:2] != (point, version):
            return None
        try:  # the pipeline's own table: trusted; unreadable (another release's classes): refit
            model = pickle.loads(zlib.decompress(found[2]))
        except Exception:
            return None
        self.reused += 1
        return model

    def keep(self, symbol: str, point: pd.Timestamp, model: Any) -> None:
        newest = self.used.get(symbol)
        if newest is None or point >= newest[0]:
            self.used[symbol] = (point, model)

    def to_store(self) -> list[tuple[str, pd.Timestamp, str, bytes]]:
        """What the store lacks: a symbol's newest model, unless the store holds a later refit
        point (a re-run of an old window) or this very model."""
        rows = []
        for symbol, (point, model) in sorted(self.used.items()):
            stored = self.stored.get(symbol)
            newer = stored is None or point > stored[0]
            refitted = stored is not None and point == stored[0] and model.version != stored[1]
            if newer or refitted:
                rows.append((symbol, point, model.version, zlib.compress(pickle.dumps(model), 1)))
        return rows


def param(default: object, description: str) -> Any:
    """A detector parameter: its default and what it means (shown in the Dagster launchpad)."""
    return field(default=default, metadata={"description": description})


def sessions_before(count: Callable[[Any], int]) -> Callable[[Any, dt.date], dt.date]:
    """`history_start` for methods that look back a fixed number of sessions."""
    return lambda params, start: session_offset(start, -count(params))


def calibrated_history_start(detector: Detector, params: object, start: dt.date) -> dt.date:
    """The first session a method reads to score and calibrate a window starting on `start`:
    each day's tail probability ranks its score among the previous year's scores."""
    return detector.history_start(params, session_offset(start, -METHOD_CALIBRATION_SESSIONS))


def with_benchmark_returns(
    market: pd.DataFrame, closes: pd.DataFrame, benchmark_of: dict[str, str]
) -> pd.DataFrame:
    """`market` with each row's `benchmark` and its log return that day (`benchmark_return`),
    from `closes` (symbol, timestamp, close of the benchmarks, sorted); NaN for a symbol that is
    its own benchmark, or on a day its benchmark has no return."""
    keys = closes["symbol"].to_numpy()
    returns = closes.assign(
        benchmark_return=per_group(
            keys, closes["close"].to_numpy("float64"), lambda c: np.log(c / shift(c))
        )
    ).rename(columns={"symbol": "benchmark"})[["benchmark", "timestamp", "benchmark_return"]]
    named = market.assign(benchmark=market["symbol"].map(benchmark_of).astype("str"))
    joined = named.merge(returns, on=["benchmark", "timestamp"], how="left", validate="m:1")
    own = joined["benchmark"] == joined["symbol"]
    return joined.assign(benchmark_return=joined["benchmark_return"].where(~own))


def market_for(
    detector: Detector, params: object, market: pd.DataFrame, closes: pd.DataFrame | None = None
) -> pd.DataFrame:
    """`market` as `detector` reads it: a method measuring symbols against benchmarks gets
    their returns from `closes` (symbol, timestamp, close; default: the market's own)."""
    if detector.benchmarks is None:
        return market
    benchmark_of = detector.benchmarks(params, list(pd.unique(market["symbol"])))
    own = market[["symbol", "timestamp", "close"]]
    return with_benchmark_returns(market, own if closes is None else closes, benchmark_of)


def stable_id(*parts: str) -> int:
    """A stable 63-bit id of `parts`: the same in every run and every database."""
    key = "|".join(parts).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


def anomaly_id(symbol: str, timestamp: pd.Timestamp, method: str, anomaly_type: str) -> int:
    """The id of one anomaly (or alert): stable, so labels survive re-materialization."""
    return stable_id(symbol, f"{timestamp:%Y-%m-%d}", method, anomaly_type)


def json_rows(columns: Mapping[str, np.ndarray], count: int) -> list[str]:
    """Each of the `count` rows of `columns` (arrays of that length) as one canonical JSON
    object — sorted keys, floats rounded to 6 decimals, NaN as null — built a column at a
    time."""
    fields = [
        [f"{json.dumps(key)}: {text}" for text in _json_texts(np.asarray(columns[key]))]
        for key in sorted(columns)
    ]
    if not fields:
        return ["{}"] * count
    return ["{" + ", ".join(row) + "}" for row in zip(*fields, strict=True)]


def _json_texts(values: np.ndarray) -> list[str]:
    """Each value's JSON text: numbers and flags from their numpy column at once, anything else
    (text, lists of standouts) through `json.dumps`."""
    if values.dtype.kind == "f":
        return [_float_text(number) for number in values.astype("float64").tolist()]
    if values.dtype.kind in "iu":
        return [str(number) for number in values.tolist()]
    if values.dtype.kind == "b":
        return ["true" if flag else "false" for flag in values.tolist()]
    return [json.dumps(_plain(value), sort_keys=True) for value in values]


def _float_text(number: float) -> str:
    """As `json.dumps` writes the rounded number (its repr; Infinity when infinite)."""
    if math.isnan(number):
        return "null"
    rounded = round(number, 6)
    return repr(rounded) if math.isfinite(rounded) else json.dumps(rounded)


def _plain(value: object) -> object:
    """`value` with numpy scalars as Python numbers, floats rounded, NaN as None."""
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    return value


def anomaly_rows(
    market: pd.DataFrame,
    flagged: np.ndarray,
    method: str,
    anomaly_type: np.ndarray | str,
    score: np.ndarray,
    severity: np.ndarray,
    details: dict[str, np.ndarray | float | int | str],
    p_value: np.ndarray | None = None,
) -> pd.DataFrame:
    """The anomalies frame for the rows of `market` where `flagged` (and `in_window`) is true.

    `score` is per row of `market` (larger = more unusual); each flagged day's `p_value` is its
    tail probability among the symbol's scores of the previous year in `market` (see
    `calibrated_history_start`), unless the method gives its own (per row). `details` maps each
    key to a per-row array or a constant; it becomes one JSON object per row.
    """
    mask = np.asarray(flagged, dtype=bool) & market["in_window"].to_numpy(dtype=bool)
    rows = np.flatnonzero(mask)
    if p_value is None:
        p_value = tail_probability(
            market["symbol"].to_numpy(),
            np.asarray(score, dtype="float64"),
            window=METHOD_CALIBRATION_SESSIONS,
            tail=METHOD_TAIL_SESSIONS,
            rows=mask,
        )
    types = np.broadcast_to(np.asarray(anomaly_type, dtype=object), len(market))[rows]
    symbols = market["symbol"].to_numpy()[rows]
    stamps = market["timestamp"].to_numpy()[rows]
    columns = {
        key: np.broadcast_to(np.asarray(value), len(market))[rows] for key, value in details.items()
    }
    return pd.DataFrame(
        {
            "id": [  # anomaly_id's key, its days formatted at once
                stable_id(s, day, method, a)
                for s, day, a in zip(symbols, day_strings(stamps), types, strict=True)
            ],
            "symbol": symbols,
            "timestamp": stamps,
            "anomaly_type": types,
            "method": method,
            "score": np.asarray(score, dtype="float64")[rows],
            "severity": np.asarray(severity, dtype="float64")[rows],
            "details": json_rows(columns, len(rows)),
            "p_value": np.asarray(p_value, dtype="float64")[rows],
        }
    ).astype(
        {
            "id": "int64",
            "symbol": "str",
            "timestamp": "datetime64[ns]",
            "anomaly_type": "str",
            "method": "str",
            "details": "str",
        }
    )


def day_strings(stamps: np.ndarray) -> np.ndarray:
    """Each timestamp's day as anomaly_id writes it (YYYY-MM-DD), for a whole column."""
    return np.datetime_as_string(np.asarray(stamps, dtype="datetime64[ns]"), unit="D")


def object_array(items: Sequence[object]) -> np.ndarray:
    """A 1-D object array of `items`, even when they are lists (numpy would make a 2-D array)."""
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array


def combine(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Anomaly frames of one method, in a stable order."""
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(["symbol", "timestamp", "anomaly_type"], kind="stable").reset_index(
        drop=True
    )

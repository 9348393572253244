"""The one interface every price source implements.

A source turns (symbols, window of days) into raw daily bars. It knows nothing of Dagster or
PostgreSQL and does not judge its data: the quality gate decides what is stored and what is
quarantined, so a vendor's bad rows are kept with a reason instead of vanishing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from marketpulse_pipeline.calendar import SessionWindow

BAR_VALUES = ("open", "high", "low", "close", "volume")
BAR_DTYPES = {
    "symbol": "str",
    "timestamp": "datetime64[ns]",
    **dict.fromkeys(BAR_VALUES, "float64"),
    "source_ref": "str",
}
"""Columns of `PriceSource.bars`: prices and volume as floats (NaN where the source had none);
`source_ref` says where the row came from (a file and line, a generator and its seed)."""

RAW_TEXT_DTYPES = {f"{name}_text": "str" for name in BAR_VALUES}
"""Optional columns of `PriceSource.bars`: each value exactly as the source wrote it (a CSV
field's text), so a quarantined row keeps what the vendor sent rather than the parsed float.
A source that reads no text leaves them out; the gate then shows the parsed value."""

INJECTED_DTYPES = {
    "symbol": "str",
    "timestamp": "datetime64[ns]",
    "kind": "str",
    "magnitude": "float64",
    "duration": "int64",
}
"""Columns of `PriceSource.injected_anomalies`: first session, kind, size, sessions it lasts."""

CORPORATE_ACTION_DTYPES = {
    "symbol": "str",
    "timestamp": "datetime64[ns]",
    "kind": "str",
    "value": "float64",
    "source_ref": "str",
}
"""Columns of `PriceSource.corporate_actions`: the ex-date, `split` or `dividend`, and the
split's ratio (new shares per old share: 4 for a 4:1 split) or the dividend's cash per share."""


class SourceError(ValueError):
    """A source could not give one symbol's bars (a missing file, a vendor that failed); the
    message is one line naming it. Other symbols of the same run go on."""


class PriceSource(ABC):
    """Where daily bars come from. Subclass it and implement `bars` to add a market-data vendor."""

    name: str
    """Stored with every bar: a symbol's history comes from one source name only."""

    @abstractmethod
    def bars(self, symbols: Sequence[str], window: SessionWindow) -> pd.DataFrame:
        """Raw bars of `symbols` dated inside `window` (calendar days, ends included)."""

    def injected_anomalies(self, symbols: Sequence[str], window: SessionWindow) -> pd.DataFrame:
        """Anomalies this source planted in `window`: the ground truth detectors are scored on.

        Real market data has none, so the default is an empty frame.
        """
        return conform(pd.DataFrame(), INJECTED_DTYPES)

    def corporate_actions(self, symbols: Sequence[str], window: SessionWindow) -> pd.DataFrame:
        """Splits and dividends of `symbols` dated inside `window`, as far as the source knows
        them (its bars are already adjusted for the splits). Default: none."""
        return conform(pd.DataFrame(), CORPORATE_ACTION_DTYPES)


def conform(
    frame: pd.DataFrame, dtypes: Mapping[str, str], optional: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """`frame` with exactly the given columns, in order and of the given types (empty if absent),
    followed by those `optional` columns that `frame` has."""
    present = {name: dtype for name, dtype in (optional or {}).items() if name in frame.columns}
    kept = {**dtypes, **present}
    if frame.empty:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in kept.items()})
    return frame[list(kept)].astype(kept).reset_index(drop=True)


def fetch_bars(
    source: PriceSource, windows: Mapping[str, SessionWindow]
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Raw bars of every symbol's window, asking the source once per distinct window (the raw
    text columns come along when the source gives them), and why each symbol it could not
    answer for failed: when a request for several symbols fails, each is asked alone."""
    frames, failed = [], {}
    for window, symbols in _by_window(windows).items():
        try:
            frames.append(source.bars(symbols, window))
            continue
        except SourceError as error:
            if len(symbols) == 1:
                failed[symbols[0]] = str(error)
                continue
        for symbol in symbols:
            try:
                frames.append(source.bars([symbol], window))
            except SourceError as error:
                failed[symbol] = str(error)
    bars = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return conform(bars, BAR_DTYPES, RAW_TEXT_DTYPES), failed


def fetch_injected(source: PriceSource, windows: Mapping[str, SessionWindow]) -> pd.DataFrame:
    """The source's ground-truth anomalies in every symbol's window."""
    return _per_window(source.injected_anomalies, windows, INJECTED_DTYPES)


def fetch_corporate_actions(
    source: PriceSource, windows: Mapping[str, SessionWindow]
) -> pd.DataFrame:
    """The source's splits and dividends in every symbol's window."""
    return _per_window(source.corporate_actions, windows, CORPORATE_ACTION_DTYPES)


def _per_window(
    ask: Callable[[Sequence[str], SessionWindow], pd.DataFrame],
    windows: Mapping[str, SessionWindow],
    dtypes: Mapping[str, str],
) -> pd.DataFrame:
    """`ask` once per distinct window, for its symbols; the answers as one frame."""
    frames = [ask(symbols, window) for window, symbols in _by_window(windows).items()]
    return conform(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(), dtypes)


def _by_window(windows: Mapping[str, SessionWindow]) -> dict[SessionWindow, list[str]]:
    """The symbols of each distinct, non-empty window: a source is asked once per window."""
    by_window: dict[SessionWindow, list[str]] = {}
    for symbol, window in windows.items():
        if not window.is_empty:
            by_window.setdefault(window, []).append(symbol)
    return by_window

"""Which sessions a computed asset processes: the run's explicit window, or catching up with
what its upstream tables have processed."""

from collections.abc import Mapping, Sequence

import psycopg

from marketpulse_pipeline.calendar import SessionWindow, follow_windows
from marketpulse_pipeline.resources import WindowResource
from marketpulse_pipeline.storage.tables import Table, processed_spans

Upstream = tuple[Table, Mapping[str, str] | None]


def follow(
    conn: psycopg.Connection,
    window: WindowResource,
    target: Table,
    upstreams: Sequence[Upstream],
    symbols: Sequence[str],
    where: Mapping[str, str] | None = None,
) -> dict[str, SessionWindow]:
    """Windows for `target` (or its slice `where`) that every upstream has processed."""
    processed = processed_spans(conn, target, symbols, where)
    spans = [processed_spans(conn, table, symbols, slice_) for table, slice_ in upstreams]
    start, end = window.explicit()
    return follow_windows(
        symbols,
        processed,
        {symbol: _common([span[symbol] for span in spans]) for symbol in symbols},
        start=start,
        end=end,
    )


def _common(spans: list[SessionWindow | None]) -> SessionWindow | None:
    """The sessions every upstream has processed."""
    if not spans or any(span is None for span in spans):
        return None
    return SessionWindow(max(s.start for s in spans), min(s.end for s in spans))

"""The computed assets' plans, from what the database says about them and their upstreams
(the decision itself is `session_plan.derived_plans`)."""

from collections.abc import Mapping, Sequence

import pandas as pd
import psycopg

from marketpulse_pipeline.calendar import SessionWindow, previous_session
from marketpulse_pipeline.session_plan import DerivedPlan, common_span, derived_plans
from marketpulse_pipeline.storage.tables import (
    STOCK_PRICES,
    Table,
    replace_window,
    stored_holes,
    stored_spans,
    valid_through,
)

Upstream = tuple[Table, Mapping[str, str] | None]


def catch_up(
    conn: psycopg.Connection,
    target: Table,
    upstreams: Sequence[Upstream],
    symbols: Sequence[str],
    tolerance: int,
    where: Mapping[str, str] | None = None,
) -> dict[str, DerivedPlan]:
    """What `target` (or its slice `where`) recomputes for each symbol: from its first invalid
    session through the last session every upstream is valid for. Prices are valid up to the
    first missing session of a symbol missing more than `tolerance` sessions."""
    prices = usable_prices(conn, symbols, tolerance)
    spans = [
        prices if table is STOCK_PRICES else _valid_spans(conn, table, slice_, prices)
        for table, slice_ in upstreams
    ]
    upstream = {symbol: common_span(span[symbol] for span in spans) for symbol in symbols}
    return derived_plans(symbols, valid_through(conn, target, symbols, where), upstream)


def usable_prices(
    conn: psycopg.Connection, symbols: Sequence[str], tolerance: int
) -> dict[str, SessionWindow | None]:
    """Each symbol's stored prices, up to the session before its first hole when it has more
    than `tolerance` missing sessions: nothing is computed across such a hole."""
    spans = stored_spans(conn, STOCK_PRICES, symbols)
    for symbol, holes in stored_holes(conn, symbols).items():
        if holes.count > tolerance and spans[symbol] is not None:
            spans[symbol] = SessionWindow(spans[symbol].start, previous_session(holes.first))
    return spans


def _valid_spans(
    conn: psycopg.Connection,
    table: Table,
    where: Mapping[str, str] | None,
    prices: Mapping[str, SessionWindow | None],
) -> dict[str, SessionWindow | None]:
    """From each symbol's first price through the session its rows in `table` are valid for."""
    through = valid_through(conn, table, list(prices), where)
    return {
        symbol: SessionWindow(span.start, through[symbol]) if span and through[symbol] else None
        for symbol, span in prices.items()
    }


def write(
    conn: psycopg.Connection,
    target: Table,
    frame: pd.DataFrame,
    plans: Mapping[str, DerivedPlan],
    where: Mapping[str, str] | None = None,
) -> int:
    """Replace every row each plan replaces with `frame`'s, and record the new validity — one
    transaction."""
    return replace_window(
        conn,
        target,
        frame,
        {symbol: plan.replaced for symbol, plan in plans.items()},
        where=where,
        valid={symbol: plan.valid_through for symbol, plan in plans.items()},
    )

"""`price_features`: returns, ranges and indicators per symbol and session."""

from collections.abc import Mapping

import dagster as dg
import psycopg

from marketpulse_pipeline.assets.metadata import (
    KINDS,
    OWNERS,
    Stopwatch,
    per_symbol,
    report_partitions,
    run_wide,
    table_metadata,
)
from marketpulse_pipeline.assets.windows import catch_up, write
from marketpulse_pipeline.calendar import (
    EARLIEST_SESSION,
    SessionWindow,
    inside_windows,
    session_offset,
)
from marketpulse_pipeline.features.indicators import WilderState, compute_features
from marketpulse_pipeline.resources import PostgresResource, PriceSourceResource
from marketpulse_pipeline.schemas import PriceFeatures, validated
from marketpulse_pipeline.storage.tables import (
    PRICE_FEATURES,
    STOCK_PRICES,
    latest_before,
    read_window,
    row_counts,
)


def build_features_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name="price_features",
        deps=["stock_prices"],
        description=(
            "Returns (%, log), volume change, range, gap, SMA(20), RSI(14) and Bollinger(20, 2)"
            " per symbol and session. Indicators are defined over the symbol's whole stored"
            " history up to each day (RSI resumes from the Wilder state stored on the last valid"
            " row), TA-Lib conventions; warm-up rows are NULL. Recomputes every session from"
            " the first whose prices changed."
        ),
        group_name="features",
        kinds=KINDS,
        owners=OWNERS,
        metadata=table_metadata(PRICE_FEATURES),
        **per_symbol(partitions),
    )
    def price_features(
        context: dg.AssetExecutionContext,
        database: PostgresResource,
        price_source: PriceSourceResource,
    ) -> dg.MaterializeResult:
        symbols = context.partition_keys
        clock = Stopwatch()
        with database.outcome(context, "price_features"), database.connect() as conn:
            database.hold_symbols(context)
            plans = catch_up(
                conn,
                PRICE_FEATURES,
                [(STOCK_PRICES, None)],
                symbols,
                price_source.max_missing_sessions,
            )
            windows = {s: plan.compute for s, plan in plans.items()}
            live = {s: w for s, w in windows.items() if not w.is_empty}
            with clock.stage("read"):
                resume = _stored_rsi_state(conn, live)
                history = read_window(conn, STOCK_PRICES, _history(live, resume))
            with clock.stage("compute"):
                features = compute_features(history, resume=resume)
                features = features[inside_windows(features, live)].reset_index(drop=True)
            with clock.stage("validation"):
                features = validated(PriceFeatures, features)
            with clock.stage("write"):
                write(conn, PRICE_FEATURES, features, plans)
            stored = row_counts(conn, PRICE_FEATURES, symbols)
        report_partitions(context, windows, {"rows_written": features}, stored=stored)
        return dg.MaterializeResult(
            metadata={
                **run_wide({"rows_written": len(features), "history_rows_read": len(history)}),
                **clock.metadata(),
            }
        )

    return price_features


# Sessions of prices read before a resumed window: the 20-close windows need 19, and a margin
# keeps them identical to a whole-history computation across a few tolerated missing sessions.
RESUME_LOOKBACK = 60


def _stored_rsi_state(
    conn: psycopg.Connection, windows: Mapping[str, SessionWindow]
) -> dict[str, WilderState]:
    """The RSI state stored on each symbol's last feature row before its window, if any."""
    rows = latest_before(
        conn,
        PRICE_FEATURES,
        {symbol: window.start for symbol, window in windows.items()},
        ["symbol", "timestamp", "rsi_avg_gain", "rsi_avg_loss"],
        not_null="rsi_avg_gain",
    )
    return {
        row.symbol: WilderState(row.timestamp, row.rsi_avg_gain, row.rsi_avg_loss)
        for row in rows.itertuples(index=False)
    }


def _history(
    windows: Mapping[str, SessionWindow], resume: Mapping[str, WilderState]
) -> dict[str, SessionWindow]:
    """Prices to read: from the stored RSI state (and the moving windows' lookback) when there
    is one, else the symbol's whole history."""
    history = {}
    for symbol, window in windows.items():
        start = EARLIEST_SESSION
        if symbol in resume:
            lookback = session_offset(window.start, -RESUME_LOOKBACK)
            start = min(resume[symbol].timestamp.date(), lookback)
        history[symbol] = SessionWindow(start, window.end)
    return history

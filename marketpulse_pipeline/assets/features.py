"""`price_features`: returns, ranges and indicators per symbol and session."""

import dagster as dg

from marketpulse_pipeline.assets.metadata import Stopwatch, column_schema, report_partitions
from marketpulse_pipeline.assets.windows import follow
from marketpulse_pipeline.calendar import (
    EARLIEST_SESSION,
    SessionWindow,
    inside_windows,
)
from marketpulse_pipeline.features.indicators import compute_features
from marketpulse_pipeline.resources import PostgresResource, WindowResource
from marketpulse_pipeline.schemas import PriceFeatures, validated
from marketpulse_pipeline.storage.tables import (
    PRICE_FEATURES,
    STOCK_PRICES,
    read_window,
    replace_window,
)

OWNERS = ["team:marketpulse"]


def build_features_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name="price_features",
        deps=["stock_prices"],
        description=(
            "Returns (%, log), volume change, range, gap, SMA(20), RSI(14) and Bollinger(20, 2)"
            " per symbol and session. Indicators are computed over the symbol's whole stored"
            " history up to each day, TA-Lib conventions; warm-up rows are NULL."
        ),
        group_name="features",
        kinds={"postgres", "pandas"},
        owners=OWNERS,
        metadata={"dagster/column_schema": column_schema(PriceFeatures)},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def price_features(
        context: dg.AssetExecutionContext, database: PostgresResource, window: WindowResource
    ) -> dg.MaterializeResult:
        symbols = context.partition_keys
        clock = Stopwatch()
        with database.connect() as conn:
            windows = follow(conn, window, PRICE_FEATURES, [(STOCK_PRICES, None)], symbols)
            live = {s: w for s, w in windows.items() if not w.is_empty}
            with clock.stage("read"):
                history = read_window(
                    conn,
                    STOCK_PRICES,
                    {s: SessionWindow(EARLIEST_SESSION, w.end) for s, w in live.items()},
                )
            with clock.stage("compute"):
                features = compute_features(history)
                features = features[inside_windows(features, live)].reset_index(drop=True)
            with clock.stage("validation"):
                features = validated(PriceFeatures, features)
            with clock.stage("write"):
                replace_window(conn, PRICE_FEATURES, features, windows)
        report_partitions(context, windows, {"rows_written": features})
        return dg.MaterializeResult(
            metadata={
                "rows_written": len(features),
                "history_rows_read": len(history),
                **clock.metadata(),
            }
        )

    return price_features

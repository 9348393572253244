"""One anomaly asset per detection method, all built from the one definition below."""

import dataclasses

import dagster as dg
import pandas as pd
import psycopg

from marketpulse_pipeline.assets.checks import flag_rate_check
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
from marketpulse_pipeline.calendar import SessionWindow, previous_session
from marketpulse_pipeline.detectors import DETECTORS, Detector
from marketpulse_pipeline.detectors.base import ModelCache, calibrated_history_start, market_for
from marketpulse_pipeline.resources import PostgresResource, PriceSourceResource
from marketpulse_pipeline.schemas import Anomalies, validated
from marketpulse_pipeline.storage.models import load_models, store_models
from marketpulse_pipeline.storage.tables import (
    ANOMALIES,
    MARKET_LOCK,
    PRICE_FEATURES,
    STOCK_PRICES,
    read_market,
    read_window,
    row_counts,
)

CLOSES = ["symbol", "timestamp", "close"]


def anomaly_asset_name(method: str) -> str:
    return f"anomalies_{method}"


def build_anomaly_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    return [build_anomaly_asset(detector, partitions) for detector in DETECTORS.values()]


def build_anomaly_asset(
    detector: Detector, partitions: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    """The asset of one method: its slice of the `anomalies` table, for the run's window."""
    method = detector.method

    @dg.asset(
        name=anomaly_asset_name(method),
        deps=["price_features", "stock_prices"],
        description=f"{detector.description} Rows go to the `anomalies` table (method = {method}).",
        group_name="detectors",
        kinds=KINDS | {"isotree" if method == "isolation_forest" else "numpy"},
        owners=OWNERS,
        metadata={**table_metadata(ANOMALIES), "method": method},
        config_schema=_config_schema(detector.params),
        check_specs=[
            dg.AssetCheckSpec(
                "flag_rate_in_line",
                asset=anomaly_asset_name(method),
                description="No symbol's window flags more days than the method's rate over"
                " the symbol's previous year explains (plus three standard deviations of"
                " chance, plus two).",
            )
        ],
        **per_symbol(partitions),
    )
    def anomalies(
        context: dg.AssetExecutionContext,
        database: PostgresResource,
        price_source: PriceSourceResource,
    ) -> dg.MaterializeResult:
        params = detector.params(**context.op_execution_context.op_config)
        symbols = context.partition_keys
        where = {"method": method}
        clock = Stopwatch()
        benchmark_of = detector.benchmarks(params, symbols) if detector.benchmarks else {}
        with (
            database.outcome(context, anomaly_asset_name(method)),
            database.connect() as conn,
            conn.transaction(),
        ):
            database.hold_symbols(context)
            if benchmark_of:  # plan to write under the market lock: see MARKET_LOCK
                conn.execute(MARKET_LOCK.format(mode="_shared"))
            plans = catch_up(
                conn,
                ANOMALIES,
                [(PRICE_FEATURES, None)],
                symbols,
                price_source.max_missing_sessions,
                where,
            )
            windows = {s: plan.compute for s, plan in plans.items()}
            live = {s: w for s, w in windows.items() if not w.is_empty}
            history = {
                s: SessionWindow(calibrated_history_start(detector, params, w.start), w.end)
                for s, w in live.items()
            }
            with clock.stage("read"):
                market = read_market(conn, history, live)
                if benchmark_of:
                    closes = read_closes(conn, set(benchmark_of.values()), history)
                    market = market_for(detector, params, market, closes)
            # a method that fits models gets the symbols' kept ones, and keeps what it fits
            models = (
                ModelCache(load_models(conn, method, list(live))) if detector.keeps_models else None
            )
            with clock.stage("detect"):
                found = detector.detect(market, params, *([models] if models is not None else []))
            with clock.stage("validation"):
                found = validated(Anomalies, found)
            with clock.stage("write"):
                write(conn, ANOMALIES, found, plans, where)
                if models is not None:
                    store_models(conn, method, models.to_store())
            stored = row_counts(conn, ANOMALIES, symbols, where)
            in_window = market.loc[market["in_window"], "symbol"].value_counts()
            rate_check = flag_rate_check(conn, method, windows, found, in_window)
        report_partitions(context, windows, {"anomalies_found": found}, stored=stored)
        return dg.MaterializeResult(
            metadata={
                **_benchmark_metadata(benchmark_of, market),
                **run_wide(
                    {
                        "anomalies_found": len(found),
                        "sessions_scored": int(market["in_window"].sum()),
                        **(
                            {"models_fitted": models.fitted, "models_reused": models.reused}
                            if models is not None
                            else {}
                        ),
                        **{
                            f"type_{kind}": int(count)
                            for kind, count in _type_counts(found, detector).items()
                        },
                    }
                ),
                **clock.metadata(),
            },
            check_results=[rate_check],
        )

    return anomalies


def read_closes(
    conn: psycopg.Connection, benchmarks: set[str], history: dict[str, SessionWindow]
) -> pd.DataFrame:
    """The benchmarks' closes over every symbol's history, from the session before (a return
    reads two closes): prices, not features, so no other asset's progress matters."""
    windows = {}
    if history:
        span = SessionWindow(
            previous_session(min(w.start for w in history.values())),
            max(w.end for w in history.values()),
        )
        windows = dict.fromkeys(sorted(benchmarks), span)
    return read_window(conn, STOCK_PRICES, windows, columns=CLOSES)


def _benchmark_metadata(benchmark_of: dict[str, str], market: pd.DataFrame) -> dict[str, str]:
    """Which benchmark each symbol was measured against, and which had none (no score)."""
    if not benchmark_of:
        return {}
    used = sorted(set(benchmark_of.values()))
    if "benchmark_return" in market:
        scored = market.loc[market["in_window"]]
        answered = set(scored.loc[scored["benchmark_return"].notna(), "benchmark"])
        used = [b if b in answered else f"{b} (no prices: nothing scored against it)" for b in used]
    return {"benchmarks": ", ".join(used)}


def _type_counts(found: pd.DataFrame, detector: Detector) -> dict[str, int]:
    counts = found["anomaly_type"].value_counts()
    return {kind: int(counts.get(kind, 0)) for kind in detector.anomaly_types}


def _config_schema(params: type) -> dict[str, dg.Field]:
    """The method's parameters as Dagster run config, with their defaults and meaning."""
    return {
        field.name: dg.Field(
            field.type,
            default_value=field.default,
            description=field.metadata.get("description"),
        )
        for field in dataclasses.fields(params)
    }

"""`alerts`: the layer a person acts on — calibrated signals, one probability, a rare flag.

The computation is pure (`marketpulse_pipeline.alerts`); this asset plans, reads and writes.
Each symbol's rows read every watchlist symbol's prices (the benchmark, the market's share), so
a change of any symbol's prices makes them stale (`MARKET_TARGETS`), and the step runs in one
transaction under the market lock: nothing computed from prices another run changed meanwhile
is marked valid.
"""

import dagster as dg
import numpy as np
import pandas as pd
import psycopg
from pydantic import Field

from marketpulse_pipeline.alerts.decision import (
    AlertParams,
    alert_scores,
    alert_table,
    history_start,
)
from marketpulse_pipeline.assets.checks import alert_rate_check
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
from marketpulse_pipeline.calendar import SessionWindow, inside_windows
from marketpulse_pipeline.delivery.charts import ChartData, markdown_image, render_many
from marketpulse_pipeline.resources import PostgresResource, PriceSourceResource
from marketpulse_pipeline.schemas import AlertScores, empty, validated
from marketpulse_pipeline.storage.queries import alert_labels, chart_frames
from marketpulse_pipeline.storage.tables import (
    ALERT_SCORES,
    MARKET_LOCK,
    STOCK_PRICES,
    read_window,
    row_counts,
)

PRICE_COLUMNS = ["symbol", "timestamp", "open", "high", "low", "close", "volume"]
MAX_CHARTS = 25
"""Charts a run draws at most: the watchlist's every partition, a universe's strongest alerts."""


class AlertConfig(dg.Config):
    budget: float = Field(
        default=AlertParams.budget,
        gt=0,
        le=1,
        description="Alert when the combined probability is at most this: about the share of"
        " ordinary sessions that alert",
    )
    benchmark: str = Field(
        default=AlertParams.benchmark,
        description="Symbol the market_relative signal measures each return against",
    )
    market_share: float = Field(
        default=AlertParams.market_share,
        gt=0,
        le=1,
        description="Share of the watchlist moving unusually the same way that makes a session"
        " market-wide",
    )
    max_charts: int = Field(
        default=MAX_CHARTS,
        ge=0,
        description="Attach the chart of its last 120 sessions to each recomputed partition"
        " (about 0.15 s a chart) when the run recomputes at most this many; a larger run"
        " charts this many, those with the strongest alerts in their window. 0: no charts",
    )


def build_alerts_asset(partitions: dg.StaticPartitionsDefinition) -> dg.AssetsDefinition:
    watchlist = partitions.get_partition_keys()

    @dg.asset(
        name="alerts",
        deps=["stock_prices", "anomaly_consensus"],  # the chart shows the methods' anomalies
        description=(
            "Per symbol and session, five signals (return, volatility-adjusted return, range,"
            " volume, market-relative return) judged against the symbol's own past as tail"
            " probabilities, combined into one p_value; is_alert when it is within the budget."
            " Table alert_scores; the view alerts holds the alerted sessions."
        ),
        group_name="alerts",
        kinds=KINDS,
        owners=OWNERS,
        metadata=table_metadata(ALERT_SCORES),
        check_specs=[
            dg.AssetCheckSpec(
                "alert_rate_within_budget",
                asset="alerts",
                description="No symbol alerts, over its last year, more often than the budget"
                " explains (budget x sessions, plus three standard deviations of chance, plus"
                " two): a symbol the flag does not suit, or a budget set too loose.",
            )
        ],
        **per_symbol(partitions),
    )
    def alerts(
        context: dg.AssetExecutionContext,
        config: AlertConfig,
        database: PostgresResource,
        price_source: PriceSourceResource,
    ) -> dg.MaterializeResult:
        symbols = context.partition_keys
        params = AlertParams(config.budget, config.benchmark, config.market_share)
        clock = Stopwatch()
        with database.outcome(context, "alert_scores"), database.connect() as conn:
            database.hold_symbols(context)
            with conn.transaction():
                conn.execute(MARKET_LOCK.format(mode="_shared"))
                plans = catch_up(
                    conn,
                    ALERT_SCORES,
                    [(STOCK_PRICES, None)],
                    symbols,
                    price_source.max_missing_sessions,
                )
                windows = {s: plan.compute for s, plan in plans.items()}
                computed = [w for w in windows.values() if not w.is_empty]
                scores = empty(AlertScores)
                if computed:
                    span = SessionWindow(
                        history_start(min(w.start for w in computed)),
                        max(w.end for w in computed),
                    )
                    with clock.stage("read"):
                        prices = read_window(
                            conn,
                            STOCK_PRICES,
                            dict.fromkeys(watchlist, span),
                            columns=PRICE_COLUMNS,
                        )
                        labels = alert_labels(conn, symbols)
                    with clock.stage("compute"):
                        wanted = inside_windows(prices, windows)
                        found = alert_scores(
                            prices, params, score=_market_days(prices, wanted), labels=labels
                        )
                        scores = alert_table(found[wanted.to_numpy()])
                        scores = validated(AlertScores, scores)
                with clock.stage("write"):
                    write(conn, ALERT_SCORES, scores, plans)
            rate_check = alert_rate_check(conn, symbols, params.budget)
            stored = row_counts(conn, ALERT_SCORES, symbols)
            recomputed = [symbol for symbol, window in windows.items() if not window.is_empty]
            charted = chart_choice(recomputed, scores, config.max_charts)
            with clock.stage("charts"):
                charts = _charts(conn, charted)
        alerted = scores[scores["is_alert"]]
        report_partitions(context, windows, {"alerts": alerted}, extra=charts, stored=stored)
        return dg.MaterializeResult(
            metadata={
                **run_wide(
                    {
                        "sessions_scored": int(scores["p_value"].notna().sum()),
                        "alerts": len(alerted),
                        "market_wide_alerts": int(alerted["market_wide"].sum()),
                        "charts": f"{len(charted)} of {len(recomputed)} recomputed partitions",
                    }
                ),
                "budget": params.budget,
                "benchmark": params.benchmark
                if params.benchmark in watchlist
                else f"{params.benchmark} (not in the watchlist: market_relative is off)",
                **clock.metadata(),
            },
            check_results=[rate_check],
        )

    return alerts


def chart_choice(recomputed: list[str], scores: pd.DataFrame, most: int) -> list[str]:
    """The partitions to chart: every recomputed one, or when there are more than `most`, the
    `most` whose window holds the strongest alerts (smallest p-value), so a run over a
    thousand symbols draws the charts someone will open; `marketpulse chart` draws any."""
    if len(recomputed) <= most:
        return recomputed
    strongest = scores[scores["is_alert"]].groupby("symbol")["p_value"].min()
    order = sorted(enumerate(recomputed), key=lambda e: (strongest.get(e[1], np.inf), e[0]))
    return [symbol for _, symbol in order[:most]]


def _charts(conn: psycopg.Connection, symbols: list[str]) -> dict[str, dict[str, object]]:
    """Each symbol's chart of its last 120 sessions, as partition metadata."""
    pngs = render_many([ChartData(s, *chart_frames(conn, s)) for s in symbols], dpi=60)
    titles = [f"{symbol}: the last 120 sessions" for symbol in symbols]
    return {
        symbol: {"chart": dg.MetadataValue.md(markdown_image(png, title))}
        for symbol, png, title in zip(symbols, pngs, titles, strict=True)
    }


def _market_days(prices: pd.DataFrame, wanted: pd.Series) -> np.ndarray:
    """Rows whose probabilities are needed: every symbol's, on each day some wanted row is on
    (the market's share that day reads them all)."""
    days = prices.loc[wanted.to_numpy(), "timestamp"].unique()
    return prices["timestamp"].isin(days).to_numpy()

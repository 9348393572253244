"""`detection_quality`: precision, recall and F1 of every method against the ground truth."""

import datetime as dt
from collections.abc import Sequence

import dagster as dg
import pandas as pd

from marketpulse_pipeline.assets.anomalies import anomaly_asset_name
from marketpulse_pipeline.assets.metadata import KINDS, OWNERS, Stopwatch, table_metadata
from marketpulse_pipeline.calendar import EARLIEST_SESSION, SessionWindow
from marketpulse_pipeline.delivery.charts import markdown_image, quality_chart
from marketpulse_pipeline.detectors import METHODS
from marketpulse_pipeline.quality import detection_quality
from marketpulse_pipeline.resources import PostgresResource
from marketpulse_pipeline.schemas import DetectionQuality, validated
from marketpulse_pipeline.storage.queries import labels_by_method
from marketpulse_pipeline.storage.tables import (
    ALERT_SCORES,
    ANOMALIES,
    ANOMALY_CONSENSUS,
    DETECTION_QUALITY,
    INJECTED_ANOMALIES,
    STOCK_PRICES,
    read_window,
    replace_all,
    table_summary,
)

SCORED = (*METHODS, "consensus", "alert")
RECALL_DROP = 0.1


def build_quality_asset(symbols: Sequence[str]) -> dg.AssetsDefinition:
    @dg.asset(
        name="detection_quality",
        deps=[
            *(anomaly_asset_name(method) for method in METHODS),
            "anomaly_consensus",
            "alerts",
            "injected_anomalies",
        ],
        description=(
            "Precision, recall and F1 of each method, the consensus and the alert flag against the"
            " synthetic"
            " source's injected anomalies (a detection within 1 session counts), per kind and"
            " overall, the share of symbol-days flagged, and the share of user-labelled"
            " anomalies marked false positive. Runs after the detectors."
        ),
        group_name="quality",
        kinds=KINDS,
        owners=OWNERS,
        metadata=table_metadata(DETECTION_QUALITY),
        # eager, but not held back by symbols whose partitions are missing (a new or failed one)
        check_specs=[
            dg.AssetCheckSpec(
                "alert_recall_holds",
                asset="detection_quality",
                description="The alert flag's recall of the planted anomalies did not drop by"
                f" more than {RECALL_DROP} since the previous materialization.",
            )
        ],
        automation_condition=dg.AutomationCondition.eager().without(
            ~dg.AutomationCondition.any_deps_missing()
        ),
    )
    def detection_quality_asset(
        context: dg.AssetExecutionContext, database: PostgresResource
    ) -> dg.MaterializeResult:
        everything = {s: SessionWindow(EARLIEST_SESSION, dt.date.today()) for s in symbols}
        clock = Stopwatch()
        with database.connect() as conn:
            with clock.stage("read"):
                found = read_window(
                    conn,
                    ANOMALIES,
                    everything,
                    columns=["symbol", "timestamp", "method", "severity"],
                )
                agreed = read_window(
                    conn,
                    ANOMALY_CONSENSUS,
                    everything,
                    columns=["symbol", "timestamp", "is_consensus", "severity"],
                )
                alerted = read_window(
                    conn,
                    ALERT_SCORES,
                    everything,
                    columns=["symbol", "timestamp", "is_alert", "p_value"],
                )
                truth = read_window(conn, INJECTED_ANOMALIES, everything)
                symbol_days = int(table_summary(conn, STOCK_PRICES, symbols)["rows"].sum())
                labels = labels_by_method(conn)
            with clock.stage("compute"):
                detections = pd.concat(
                    [
                        found,
                        agreed[agreed["is_consensus"]].assign(method="consensus"),
                        alerted[alerted["is_alert"]].assign(method="alert"),
                    ],
                    ignore_index=True,
                )
                scored = alerted[alerted["p_value"].notna()]
                ranked = pd.concat(  # the strongest first: severity, or the smallest p
                    [
                        found.rename(columns={"severity": "strength"}),
                        agreed.assign(method="consensus", strength=agreed["severity"]),
                        scored.assign(method="alert", strength=-scored["p_value"]),
                    ],
                    ignore_index=True,
                )[["symbol", "timestamp", "method", "strength"]]
                quality = validated(
                    DetectionQuality,
                    detection_quality(
                        detections, truth, SCORED, symbol_days, labels, ranked=ranked
                    ),
                )
            with clock.stage("write"):
                replace_all(conn, DETECTION_QUALITY, quality)
        overall = quality[quality["kind"] == "all"].set_index("method")
        numbers = {
            f"{measure}_{method}": round(float(overall.at[method, measure]), 4)
            for method in SCORED
            for measure in ("precision", "recall", "f1", "flag_rate", "recall_at_1pct")
            if pd.notna(overall.at[method, measure])
        }
        check = _recall_check(context, numbers.get("recall_alert"))
        if truth.empty:
            context.log.warning(
                "no injected anomalies: precision and recall need the synthetic source"
            )
        return dg.MaterializeResult(
            metadata={
                **numbers,
                "injected_anomalies": len(truth),
                "symbol_days": symbol_days,
                "orphaned_labels": int(labels["method"].isna().sum()),
                **clock.metadata(),
                "chart": dg.MetadataValue.md(
                    markdown_image(quality_chart(overall), "precision and recall per method")
                ),
                "overall": dg.MetadataValue.md(
                    overall[
                        ["detections", "precision", "recall", "f1", "flag_rate", "recall_at_1pct"]
                    ]
                    .round(3)
                    .to_markdown()
                ),
            },
            check_results=[check],
        )

    return detection_quality_asset


def _recall_check(context: dg.AssetExecutionContext, recall: float | None) -> dg.AssetCheckResult:
    """The alert flag's recall against the previous materialization's (warn on a drop)."""
    event = context.instance.get_latest_materialization_event(context.asset_key)
    before = None
    if event and event.asset_materialization:
        value = event.asset_materialization.metadata.get("recall_alert")
        before = float(value.value) if value is not None else None
    dropped = recall is not None and before is not None and recall < before - RECALL_DROP
    summary = (
        "no recall to compare (no planted anomalies, or the first scoring)"
        if recall is None or before is None
        else f"recall {recall:.3f}, before {before:.3f}"
    )
    return dg.AssetCheckResult(
        check_name="alert_recall_holds",
        passed=not dropped,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"summary": summary},
    )

"""`anomaly_consensus`: per symbol and day, how many methods agree and how strongly."""

import dagster as dg

from marketpulse_pipeline.assets.anomalies import anomaly_asset_name
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
from marketpulse_pipeline.consensus import consensus
from marketpulse_pipeline.detectors import METHODS
from marketpulse_pipeline.resources import PostgresResource, PriceSourceResource
from marketpulse_pipeline.schemas import AnomalyConsensus, validated
from marketpulse_pipeline.storage.tables import (
    ANOMALIES,
    ANOMALY_CONSENSUS,
    read_window,
    row_counts,
)


class ConsensusConfig(dg.Config):
    min_votes: int = 2
    """Methods that must flag a symbol on a day for it to count as a consensus anomaly."""


def build_consensus_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name="anomaly_consensus",
        deps=[anomaly_asset_name(method) for method in METHODS],
        description=(
            "One row per symbol and session with at least one anomaly: the number of methods"
            " that flagged it (votes), which ones, a combined severity (sum of each method's"
            " strongest severity), the strongest anomaly type, and whether votes reach min_votes."
        ),
        group_name="consensus",
        kinds=KINDS,
        owners=OWNERS,
        metadata=table_metadata(ANOMALY_CONSENSUS),
        **per_symbol(partitions),
    )
    def anomaly_consensus(
        context: dg.AssetExecutionContext,
        config: ConsensusConfig,
        database: PostgresResource,
        price_source: PriceSourceResource,
    ) -> dg.MaterializeResult:
        symbols = context.partition_keys
        clock = Stopwatch()
        with database.outcome(context, "anomaly_consensus"), database.connect() as conn:
            database.hold_symbols(context)
            upstreams = [(ANOMALIES, {"method": method}) for method in METHODS]
            plans = catch_up(
                conn, ANOMALY_CONSENSUS, upstreams, symbols, price_source.max_missing_sessions
            )
            windows = {s: plan.compute for s, plan in plans.items()}
            with clock.stage("read"):
                found = read_window(conn, ANOMALIES, windows)
            with clock.stage("compute"):
                agreed = validated(AnomalyConsensus, consensus(found, config.min_votes))
            with clock.stage("write"):
                write(conn, ANOMALY_CONSENSUS, agreed, plans)
            stored = row_counts(conn, ANOMALY_CONSENSUS, symbols)
        report_partitions(
            context, windows, {"consensus_anomalies": agreed[agreed["is_consensus"]]}, stored=stored
        )
        return dg.MaterializeResult(
            metadata={
                **run_wide(
                    {
                        "days_with_anomalies": len(agreed),
                        "consensus_anomalies": int(agreed["is_consensus"].sum()),
                    }
                ),
                "min_votes": config.min_votes,
                **clock.metadata(),
            }
        )

    return anomaly_consensus

"""What every asset shares: owners, kinds and partitioning, and metadata built from the
pipeline's own objects — column schemas from the Pandera models, samples, timings."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dagster as dg
import pandas as pd

from marketpulse_pipeline.calendar import SessionWindow
from marketpulse_pipeline.storage.migrations import SCHEMA
from marketpulse_pipeline.storage.tables import Table

OWNERS = ["team:marketpulse"]
KINDS = {"postgres", "pandas"}


def per_symbol(partitions: dg.PartitionsDefinition) -> dict[str, object]:
    """Decorator arguments every symbol-partitioned asset shares: one run per range of symbols."""
    return {"partitions_def": partitions, "backfill_policy": dg.BackfillPolicy.single_run()}


def table_metadata(table: Table) -> dict[str, object]:
    """Definition metadata of an asset stored in `table`: its name and its columns."""
    return {
        "dagster/table_name": f"{SCHEMA}.{table.name}",
        "dagster/column_schema": column_schema(table),
    }


def column_schema(table: Table) -> dg.TableSchema:
    """The `dagster/column_schema` of a table, from the Pandera model that validates it, with
    each column's PostgreSQL type."""
    schema = table.model.to_schema()
    pg_types = dict(table.columns)
    frame_rules = [check.description or check.error or check.name for check in schema.checks]
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=pg_types[name],
                description=column.description,
                constraints=dg.TableColumnConstraints(
                    nullable=column.nullable,
                    unique=column.unique,
                    other=[check.error or check.name for check in column.checks],
                ),
            )
            for name, column in schema.columns.items()
        ],
        constraints=dg.TableConstraints(other=frame_rules) if frame_rules else None,
    )


def sample(frame: pd.DataFrame, limit: int = 10) -> dg.MarkdownMetadataValue:
    """The first rows of `frame` as a Markdown table, with the total when it is cut short."""
    shown = frame.head(limit).astype("str").to_markdown(index=False) if len(frame) else "(none)"
    if len(frame) > limit:
        shown += f"\n\n… and {len(frame) - limit} more"
    return dg.MetadataValue.md(shown)


def report_partitions(
    context: dg.AssetExecutionContext,
    windows: Mapping[str, SessionWindow],
    counts: Mapping[str, pd.DataFrame],
    asset_key: str | None = None,
    extra: Mapping[str, Mapping[str, object]] | None = None,
    stored: Mapping[str, int] | None = None,
) -> None:
    """Per-partition metadata: the window processed, per name the rows of each frame (which
    has a `symbol` column) that belong to the partition, the partition's rows now stored
    (`dagster/row_count`) and any `extra` entries per symbol."""
    per_symbol = {name: frame["symbol"].value_counts().to_dict() for name, frame in counts.items()}
    for symbol, window in windows.items():
        context.add_asset_metadata(
            {
                "window": "up to date" if window.is_empty else str(window),
                **{name: int(found.get(symbol, 0)) for name, found in per_symbol.items()},
                **({"dagster/row_count": int(stored.get(symbol, 0))} if stored else {}),
                **(extra or {}).get(symbol, {}),
            },
            asset_key=asset_key,
            partition_key=symbol,
        )


def run_wide(metadata: Mapping[str, object]) -> dict[str, object]:
    """Numbers about the whole step — every partition it materialized — named `run_*`: the UI
    shows them on each partition's materialization, beside that partition's own numbers."""
    return {f"run_{key}": value for key, value in metadata.items()}


class Stopwatch:
    """Seconds a step spends per stage (read, compute, write...), reported as run-wide metadata
    `run_seconds_<stage>`: the UI plots them per run and `marketpulse bench` adds them up."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self._seconds[name] = self._seconds.get(name, 0.0) + time.perf_counter() - began

    def metadata(self) -> dict[str, float]:
        return run_wide({f"seconds_{name}": round(s, 4) for name, s in self._seconds.items()})

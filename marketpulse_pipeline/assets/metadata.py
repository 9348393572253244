"""Dagster metadata built from the pipeline's own objects: column schemas from the Pandera models,
readable samples of failing rows."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from marketpulse_pipeline.calendar import SessionWindow


def column_schema(model: type[pa.DataFrameModel]) -> dg.TableSchema:
    """The `dagster/column_schema` of a table, from the Pandera model that validates it."""
    schema = model.to_schema()
    frame_rules = [check.description or check.error or check.name for check in schema.checks]
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=str(column.dtype),
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
    frame: pd.DataFrame,
    count_name: str,
    asset_key: str | None = None,
) -> None:
    """Per-partition metadata: the window processed and how many rows it produced."""
    counts = frame["symbol"].value_counts() if len(frame) else pd.Series(dtype="int64")
    for symbol, window in windows.items():
        context.add_asset_metadata(
            {
                "window": "up to date" if window.is_empty else str(window),
                count_name: int(counts.get(symbol, 0)),
            },
            asset_key=asset_key,
            partition_key=symbol,
        )

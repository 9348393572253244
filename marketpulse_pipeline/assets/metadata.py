"""Dagster metadata built from the pipeline's own objects: column schemas from the Pandera models,
readable samples of failing rows."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pandera.pandas as pa


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

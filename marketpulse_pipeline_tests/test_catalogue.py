"""Each table written from frames has its columns spelled once, in its Pandera model; the
migrations are the database's own truth. This compares the two: a column added to one and not
the other, reordered, retyped or made nullable on one side only fails here."""

import pandera.pandas as pa
import psycopg
import pytest
from pandera.typing import Series

from marketpulse_pipeline.storage import tables
from marketpulse_pipeline.storage.migrations import SCHEMA
from marketpulse_pipeline.storage.tables import Table

MODEL_TABLES = [value for value in vars(tables).values() if isinstance(value, Table)]

FILLED_BY_DATABASE = {"created_at"}
"""Columns of a model-backed table that a write never supplies: the database fills them from
their DEFAULT. (A serial id, like anomaly_feedback's, would be one too.)"""

WRITTEN_BY_SQL = {
    "schema_migrations": "the migration runner",
    "watermarks": "replace_window, in the same transaction as the rows",
    "asset_status": "record_outcome, each asset's last outcome per symbol",
    "restatements": "log_restatements, a row per restated history",
    "market_sessions": "the migration runner, keeping the NYSE calendar ahead",
    "anomaly_feedback": "`marketpulse label` (its id is a bigserial, labelled_at a default)",
    "alert_deliveries": "the notifier: a claim and an outcome per row, under row locks",
    "detector_models": "store_models, each symbol's newest model with the method's anomalies",
}
"""Tables with no model, and what writes them with plain SQL."""


def catalogue(conn: psycopg.Connection, table: str) -> list[tuple[str, str, bool, bool]]:
    """(name, type as `Table` spells it, nullable, has a default) of each column, in order."""
    rows = conn.execute(
        "SELECT column_name, udt_name, is_nullable = 'YES', column_default IS NOT NULL"
        " FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
        " ORDER BY ordinal_position",
        [SCHEMA, table],
    ).fetchall()
    # An array's udt_name is its element's with a leading underscore: _text is text[].
    return [
        (name, f"{udt[1:]}[]" if udt.startswith("_") else udt, nullable, default)
        for name, udt, nullable, default in rows
    ]


@pytest.mark.parametrize("table", MODEL_TABLES, ids=lambda table: table.name)
def test_model_matches_the_database(conn, table):
    stored = catalogue(conn, table.name)
    assert stored, f"{table.name} is not in the database"
    nullable = {name: column.nullable for name, column in table.model.to_schema().columns.items()}
    modelled = [(name, pg_type, nullable[name]) for name, pg_type in table.columns]
    written = [(n, t, null) for n, t, null, _ in stored if n not in FILLED_BY_DATABASE]
    assert modelled == written
    filled = [(name, default) for name, _, _, default in stored if name in FILLED_BY_DATABASE]
    assert all(default for _, default in filled), f"{filled}: filled by the database, no default"


def test_every_table_has_a_model_or_is_written_by_sql(conn):
    names = {
        name
        for (name,) in conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            [SCHEMA],
        )
    }
    assert names == {table.name for table in MODEL_TABLES} | set(WRITTEN_BY_SQL)


def test_a_column_whose_dtype_does_not_say_its_type_must_declare_it():
    class Loose(pa.DataFrameModel):
        tags: Series[object]

    with pytest.raises(TypeError, match=r"Loose.tags: .*metadata"):
        _ = Table("loose", Loose).columns

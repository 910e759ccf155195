"""The ledger's ORM models (cimplus/hazards/model.py) against the tables migration 0070 made.

The models map tables they never create, so nothing else notices when the two drift apart until
a flush fails. Every mapped table is compared with the database catalogue: the same column names,
the same nullability, the same type family (integer widths and a geometry's type and SRID
included, since they bound the values a column takes) and the same generated columns.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import Column
from sqlalchemy.dialects import postgresql

from cimplus.hazards.model import Base

# type names as PostgreSQL (format_type) and SQLAlchemy's PostgreSQL dialect spell them → family
_FAMILIES = {
    "smallint": "smallint", "integer": "integer", "bigint": "bigint",
    "text": "text", "varchar": "text", "character varying": "text", "character": "text", "char": "text",
    "numeric": "numeric", "double precision": "float", "real": "float",
    "timestamp with time zone": "timestamptz", "timestamp without time zone": "timestamp", "timestamp": "timestamp",
    "date": "date", "boolean": "boolean", "json": "json", "jsonb": "jsonb",
}
_GEOMETRY = re.compile(r"geometry\((\w+),\s*(\d+)\)")

# column → (format_type, NOT NULL, generated, names of the same table's columns a generated one reads)
_CATALOGUE_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attgenerated <> '',
       coalesce((SELECT array_agg(i.attname ORDER BY i.attname) FROM pg_attrdef e
                 JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = e.oid
                 JOIN pg_attribute i ON i.attrelid = d.refobjid AND i.attnum = d.refobjsubid
                 WHERE a.attgenerated <> '' AND e.adrelid = a.attrelid AND e.adnum = a.attnum
                   AND d.refobjid = a.attrelid AND d.refobjsubid NOT IN (0, a.attnum)), '{}')
  FROM pg_attribute a
 WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
"""


def family(type_text: str) -> str:
    """The family of a column type, spelt by PostgreSQL or by SQLAlchemy's PostgreSQL dialect."""
    text = type_text.strip().lower()
    if text.endswith("[]"):
        return family(text[:-2]) + "[]"
    geometry = _GEOMETRY.fullmatch(text)
    if geometry:
        return f"geometry({geometry[1]},{geometry[2]})"
    base = re.sub(r"\(.*\)", "", text).strip()   # lengths, precisions
    if base not in _FAMILIES:
        raise AssertionError(f"no family for the column type {type_text!r}: add it to _FAMILIES")
    return _FAMILIES[base]


def _catalogue(cur, qualified: str) -> dict[str, tuple[str, bool, bool, list[str]]]:
    cur.execute(_CATALOGUE_SQL, (qualified,))
    return {name: (type_text, not_null, generated, inputs) for name, type_text, not_null, generated, inputs
            in cur.fetchall()}


def _model_type(column: Column) -> str:
    return column.type.compile(dialect=postgresql.dialect())


def test_family_reads_both_spellings():
    assert family("character varying(12)") == family("VARCHAR(12)") == family("character(64)") == "text"
    assert family("numeric(14,2)") == family("NUMERIC(14, 2)") == "numeric"
    assert family("timestamp with time zone") == family("TIMESTAMP WITH TIME ZONE") == "timestamptz"
    assert family("text[]") == family("TEXT[]") == "text[]"
    assert family("geometry(Point,4490)") == family("geometry(POINT,4490)") == "geometry(point,4490)"
    assert family("geometry(Geometry,4490)") != family("geometry(POINT,4490)")
    assert family("bigint") != family("integer")
    with pytest.raises(AssertionError):
        family("uuid")


@pytest.mark.parametrize("table", sorted(Base.metadata.tables.values(), key=lambda t: t.name), ids=lambda t: t.name)
def test_every_mapped_table_matches_the_migration(conn, table):
    with conn.cursor() as cur:
        live = _catalogue(cur, f"{table.schema}.{table.name}")
    assert live, f"{table.schema}.{table.name} is mapped but does not exist"
    assert set(table.columns.keys()) == set(live), (
        f"{table.name}: only in the model {sorted(set(table.columns.keys()) - set(live))}, "
        f"only in the database {sorted(set(live) - set(table.columns.keys()))}")
    for column in table.columns:
        type_text, not_null, generated, inputs = live[column.name]
        where = f"{table.name}.{column.name}"
        assert family(_model_type(column)) == family(type_text), (where, _model_type(column), type_text)
        assert (column.computed is not None) == generated, (where, "generated column in one of the two only")
        if generated and not column.nullable and not not_null:
            # PostgreSQL marks no generated column NOT NULL by itself: the model's "never NULL" holds for
            # an expression that is NULL only on NULL inputs (the ledger's is a comparison) when every
            # column it reads is NOT NULL
            assert inputs and all(live[name][1] for name in inputs), (where, "declared NOT NULL, inputs nullable",
                                                                      inputs)
        else:
            assert column.nullable == (not not_null), (where, "model nullable" if column.nullable else "model NOT NULL",
                                                       "database NOT NULL" if not_null else "database nullable")

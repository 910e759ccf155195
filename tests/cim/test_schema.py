"""The table model (cim/schema.py) against the migrated database: the two cannot drift apart."""

from __future__ import annotations

import pytest

from cim.errors import NotFound
from cim.schema import DEM_VERSION_KEY, FEATURE_TABLES, LINEAGE, TABLES, feature_table, rank


def _live_columns(cur, table: str) -> dict[str, tuple[str, bool]]:
    cur.execute("SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
                "WHERE table_schema = 'cim' AND table_name = %s", (table,))
    return {name: (dtype, nullable) for name, dtype, nullable in cur.fetchall()}


@pytest.mark.parametrize("name", FEATURE_TABLES)
def test_every_declared_column_exists_with_its_type(conn, name):
    table = TABLES[name]
    with conn.cursor() as cur:
        live = _live_columns(cur, name)
        assert live, f"cim.{name} does not exist"
        for col in table.columns:
            assert col.name in live, f"cim.{name}.{col.name} is declared but not in the database"
            assert live[col.name][0] == col.data_type, (name, col.name, live[col.name][0], col.data_type)
        # every column of the database is declared, lineage, resolved by the loader, the key or the geometry
        undeclared = set(live) - {c.name for c in table.columns} - set(LINEAGE) - set(table.resolved) - {"id", "geom"}
        assert not undeclared, f"cim.{name} has columns the table model does not declare: {sorted(undeclared)}"
        cur.execute("SELECT type, srid FROM geometry_columns WHERE f_table_schema = 'cim' AND f_table_name = %s "
                    "AND f_geometry_column = 'geom'", (name,))
        gtype, srid = cur.fetchone()
        assert gtype == table.geometry.upper() and srid == table.srid


@pytest.mark.parametrize("name", FEATURE_TABLES)
def test_the_loaders_column_plan_is_the_databases(conn, name):
    """Every column but ``id`` and ``geom`` (attributes, resolved references, lineage) has the declared type,
    and the constant defaults of NOT NULL attribute columns are the declared ones: the loader writes
    from the model without reading the catalogue."""
    table = TABLES[name]
    with conn.cursor() as cur:
        cur.execute("SELECT column_name, data_type, column_default, is_nullable = 'YES' FROM information_schema.columns "
                    "WHERE table_schema = 'cim' AND table_name = %s AND column_name NOT IN ('id', 'geom')", (name,))
        live = cur.fetchall()
        assert {c: dtype for c, dtype, _, _ in live} == table.data_types()
        attributes = {c.name for c in table.columns}
        defaults = {}
        for column, _, default, nullable in live:
            if column in attributes and default is not None and not nullable:
                cur.execute(f"SELECT {default}")   # the catalogue's own expression text
                defaults[column] = cur.fetchone()[0]
    assert defaults == {c.name: c.default for c in table.columns if c.default is not None}
    assert all(isinstance(v, str) for v in defaults.values())   # declared defaults are text values


def test_every_feature_table_is_versioned(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT source_table FROM cim.data_version")
        keys = {r[0] for r in cur.fetchall()}
    assert set(FEATURE_TABLES) | {DEM_VERSION_KEY} <= keys


def test_loading_order_puts_segments_after_points():
    assert rank("pipe_point") < rank("pipe_segment") == len(FEATURE_TABLES) - 1
    assert rank("no_such_table") == len(FEATURE_TABLES)
    assert [t.name for t in TABLES.values() if t.network_scoped] == ["pipe_point", "pipe_segment"]
    with pytest.raises(NotFound):
        feature_table("no_such_table")
    assert feature_table("building").kinds()["floors_above"] == "int"

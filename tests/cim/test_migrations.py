"""Migrations on an empty database and on a migrated one; dictionaries; data versions."""

from __future__ import annotations

import shutil
import uuid
from urllib.parse import urlparse, urlunparse

import psycopg2
import pytest

from cim import migrate
from cim.errors import MigrationError

FEATURE_TABLES = ["admin_area", "building", "pipe_point", "pipe_segment", "green_space", "streetlight"]


@pytest.fixture
def empty_db(db_url):
    """A brand-new empty database on the test server (PostGIS not even installed)."""
    name = f"cim_empty_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(db_url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    url = urlunparse(urlparse(db_url)._replace(path="/" + name))
    yield url
    admin.cursor().execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


def test_migrations_apply_to_empty_then_again(empty_db):
    conn = psycopg2.connect(empty_db)
    done = migrate.migrate(conn)
    assert [m.version for m in done] == [m.version for m in migrate.discover()]
    assert migrate.migrate(conn) == []  # up-to-date database: nothing to do, no error
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM cim_meta.schema_migration")
        assert cur.fetchone()[0] == len(done)
    conn.close()


def test_every_geometry_is_4490_with_gist_index(conn):
    with conn.cursor() as cur:
        # views (the healthcheck layer) have no index of their own: their tables are checked
        cur.execute("SELECT f_table_name, f_geometry_column, srid FROM geometry_columns WHERE f_table_schema = 'cim' "
                    "AND f_table_name NOT IN (SELECT viewname FROM pg_views WHERE schemaname = 'cim')")
        rows = cur.fetchall()
        assert {r[0] for r in rows} >= set(FEATURE_TABLES)
        for table, column, srid in rows:
            assert srid == 4490, table
            cur.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = 'cim' AND tablename = %s "
                        "AND indexdef ILIKE %s", (table, f"%USING gist ({column})%"))
            assert cur.fetchone()[0] >= 1, f"no GiST index on cim.{table}.{column}"


def test_feature_rows_carry_lineage(conn):
    with conn.cursor() as cur:
        for table in FEATURE_TABLES:
            cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema='cim' AND table_name=%s",
                        (table,))
            cols = {r[0] for r in cur.fetchall()}
            assert {"county_code", "delivery_id", "source_layer", "source_row", "is_current"} <= cols, table


def test_changed_migration_is_refused(tmp_path, empty_db):
    for f in migrate.discover():
        shutil.copy(f.path, tmp_path / f.path.name)
    conn = psycopg2.connect(empty_db)
    migrate.migrate(conn, tmp_path)
    first = sorted(tmp_path.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after it was applied\n")
    with pytest.raises(MigrationError) as err:
        migrate.migrate(conn, tmp_path)
    assert "新增迁移" in err.value.zh and "new migration" in err.value.en
    conn.close()


def test_bad_migration_rolls_back(tmp_path, empty_db):
    for f in migrate.discover():
        shutil.copy(f.path, tmp_path / f.path.name)
    (tmp_path / "0999_broken.sql").write_text("CREATE TABLE cim.half_done (id int);\nSELECT no_such_function();\n")
    conn = psycopg2.connect(empty_db)
    with pytest.raises(MigrationError):
        migrate.migrate(conn, tmp_path)
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('cim.half_done'), max(version) FROM cim_meta.schema_migration")
        table, version = cur.fetchone()
    assert table is None and version < 999
    conn.close()


def test_dictionaries_seeded(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT name_zh, parent_code, extension FROM cim.dict_material WHERE code = 'ZT-HK'")
        assert cur.fetchone() == ("灰口铸铁", "ZT", True)
        cur.execute("SELECT attrs->>'color' FROM cim.dict_network WHERE code = 'RQ'")
        assert cur.fetchone()[0] == "255,0,255"
        cur.execute("SELECT parent_code FROM cim.dict_network WHERE code = 'YS'")
        assert cur.fetchone()[0] == "PS"
        cur.execute("SELECT name_zh FROM cim.dict_point_code WHERE code = '52012201'")
        assert cur.fetchone()[0] == "窨井"
        cur.execute("SELECT (attrs->>'min_mpa')::float, (attrs->>'max_mpa')::float FROM cim.dict_pressure_class "
                    "WHERE name_zh = '中压A'")
        assert cur.fetchone() == (0.2, 0.4)
        for table in ("dict_burial_type", "dict_pipe_status", "dict_green_class", "dict_structure_type",
                      "dict_building_use", "dict_build_era", "dict_appraisal_grade", "dict_drainage_node"):
            cur.execute(f"SELECT count(*) FROM cim.{table}")
            assert cur.fetchone()[0] >= 4, table


def test_seed_is_idempotent(conn):
    first = migrate.seed_dictionaries(conn)
    again = migrate.seed_dictionaries(conn)
    assert first == again
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM cim.dict_material")
        assert cur.fetchone()[0] == first["dict_material"]


def test_every_change_bumps_the_data_version(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT version FROM cim.data_version WHERE source_table = 'streetlight'")
        before = cur.fetchone()[0]
        cur.execute("INSERT INTO cim.streetlight (pole_no, county_code, geom) "
                    "VALUES ('LD-T1', '430703', ST_SetSRID(ST_MakePoint(111.69, 29.04), 4490))")
        cur.execute("UPDATE cim.streetlight SET status = 'fault' WHERE pole_no = 'LD-T1'")
        cur.execute("DELETE FROM cim.streetlight WHERE pole_no = 'LD-T1'")
        cur.execute("SELECT version FROM cim.data_version WHERE source_table = 'streetlight'")
        assert cur.fetchone()[0] == before + 3


def test_feature_and_appurtenance_are_exclusive(conn):
    with conn.cursor() as cur, pytest.raises(psycopg2.errors.CheckViolation):
        cur.execute("INSERT INTO cim.pipe_point (network, exp_no, feature, appurtenance, county_code, geom) "
                    "VALUES ('JS', 'JS1', '三通', '阀门', '430703', ST_SetSRID(ST_MakePoint(111.69, 29.04), 4490))")

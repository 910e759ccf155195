"""References of feature rows (migration 0050): checked per statement, as strict as foreign keys.

Each case runs in the ``conn`` fixture's transaction inside a savepoint and is rolled back.
"""

from __future__ import annotations

import io

import psycopg2
import psycopg2.extensions
import pytest

POINT = "SRID=4490;POINT(111.69 29.04)"
LINE = "SRID=4490;LINESTRING(111.69 29.04, 111.691 29.041)"


class Cursor(psycopg2.extensions.cursor):
    """A cursor that also carries the fixture's delivery id and two point ids."""

    delivery_id: int
    points: list[int]


@pytest.fixture
def cur(conn):
    with conn.cursor(cursor_factory=Cursor) as c:
        c.execute("INSERT INTO cim.delivery (county_code, file_name, sha256, submitted_by) "
                  "VALUES ('990050', 'refs.zip', repeat('a', 64), 'test') RETURNING id")
        c.delivery_id = c.fetchone()[0]
        c.execute("INSERT INTO cim.pipe_point (network, exp_no, county_code, delivery_id, geom) VALUES "
                  "('JS', 'R1', '990050', %(d)s, %(g)s), ('JS', 'R2', '990050', %(d)s, %(g)s) RETURNING id",
                  {"d": c.delivery_id, "g": POINT})
        c.points = [r[0] for r in c.fetchall()]
        yield c


def _refused(cur, sql: str, params: dict, constraint: str) -> psycopg2.Error:
    cur.execute("SAVEPOINT t")
    with pytest.raises(psycopg2.errors.ForeignKeyViolation) as exc:
        cur.execute(sql, params)
    cur.execute("ROLLBACK TO SAVEPOINT t")
    assert exc.value.diag.constraint_name == constraint
    return exc.value


def _segment(cur, start: int | None, end: int | None, delivery: int | None = None) -> str:
    return ("INSERT INTO cim.pipe_segment (network, start_exp_no, end_exp_no, start_point_id, end_point_id, "
            "county_code, delivery_id, geom) VALUES ('JS', 'R1', 'R2', %(s)s, %(e)s, '990050', %(d)s, %(g)s)")


def test_inserts_must_reference_existing_rows(cur):
    a, b = cur.points
    sql = _segment(cur, a, b)
    cur.execute(sql, {"s": a, "e": b, "d": cur.delivery_id, "g": LINE})          # both exist: accepted
    cur.execute(sql, {"s": None, "e": None, "d": None, "g": LINE})               # NULL references: accepted
    err = _refused(cur, sql, {"s": a, "e": -7, "d": cur.delivery_id, "g": LINE}, "pipe_segment_end_point_id_fkey")
    assert "(end_point_id)=(-7)" in err.diag.message_detail and err.diag.table_name == "pipe_segment"
    _refused(cur, sql, {"s": -8, "e": b, "d": cur.delivery_id, "g": LINE}, "pipe_segment_start_point_id_fkey")
    _refused(cur, sql, {"s": a, "e": b, "d": -9, "g": LINE}, "pipe_segment_delivery_id_fkey")
    for table, cols, vals in [("building", "", ""), ("streetlight", ", pole_no", ", 'L1'"),
                              ("pipe_point", ", network, exp_no", ", 'JS', 'R3'")]:
        geom = POINT if table != "building" else "SRID=4490;MULTIPOLYGON(((111 29, 111.001 29, 111 29.001, 111 29)))"
        _refused(cur, f"INSERT INTO cim.{table} (county_code, delivery_id, geom{cols}) "
                      f"VALUES ('990050', %(d)s, %(g)s{vals})", {"d": -9, "g": geom}, f"{table}_delivery_id_fkey")


def test_copy_is_checked_as_one_statement(cur):
    """A COPY with one bad reference among many valid ones is refused as a whole."""
    a, b = cur.points
    rows = [f"JS\tR1\tR2\t{a}\t{b}\t990050\t{cur.delivery_id}\t{LINE}" for _ in range(500)]
    rows.insert(250, f"JS\tR1\tR2\t{a}\t-5\t990050\t{cur.delivery_id}\t{LINE}")
    sql = ("COPY cim.pipe_segment (network, start_exp_no, end_exp_no, start_point_id, end_point_id, county_code, "
           "delivery_id, geom) FROM STDIN")
    cur.execute("SAVEPOINT t")
    with pytest.raises(psycopg2.errors.ForeignKeyViolation) as exc:
        cur.copy_expert(sql, io.StringIO("\n".join(rows) + "\n"))
    cur.execute("ROLLBACK TO SAVEPOINT t")
    assert exc.value.diag.constraint_name == "pipe_segment_end_point_id_fkey"
    cur.copy_expert(sql, io.StringIO("\n".join(rows[:250]) + "\n"))
    cur.execute("SELECT count(*) FROM cim.pipe_segment WHERE county_code = '990050'")
    assert cur.fetchone()[0] == 250


def test_updates_that_change_a_reference_are_checked(cur):
    a, b = cur.points
    cur.execute(_segment(cur, a, b) + " RETURNING id", {"s": a, "e": b, "d": cur.delivery_id, "g": LINE})
    sid = cur.fetchone()[0]
    _refused(cur, "UPDATE cim.pipe_segment SET end_point_id = -1 WHERE id = %(i)s", {"i": sid},
             "pipe_segment_end_point_id_fkey")
    _refused(cur, "UPDATE cim.pipe_segment SET delivery_id = -1 WHERE id = %(i)s", {"i": sid},
             "pipe_segment_delivery_id_fkey")
    cur.execute("UPDATE cim.pipe_segment SET end_point_id = %(a)s, is_current = false WHERE id = %(i)s",
                {"a": a, "i": sid})
    assert cur.rowcount == 1


def test_referenced_rows_cannot_go(cur):
    a, b = cur.points
    cur.execute(_segment(cur, a, b), {"s": a, "e": b, "d": cur.delivery_id, "g": LINE})
    _refused(cur, "DELETE FROM cim.pipe_point WHERE id = %(b)s", {"b": b}, "pipe_segment_start_point_id_fkey")
    _refused(cur, "DELETE FROM cim.delivery WHERE id = %(d)s", {"d": cur.delivery_id},
             "pipe_point_delivery_id_fkey")
    cur.execute("SAVEPOINT t")
    with pytest.raises(psycopg2.errors.ForeignKeyViolation):
        cur.execute("UPDATE cim.pipe_point SET id = -100 WHERE id = %s", (a,))
    cur.execute("ROLLBACK TO SAVEPOINT t")
    # once nothing refers to them, the rows may go
    cur.execute("DELETE FROM cim.pipe_segment WHERE county_code = '990050'")
    cur.execute("DELETE FROM cim.pipe_point WHERE county_code = '990050'")
    cur.execute("DELETE FROM cim.delivery WHERE id = %s", (cur.delivery_id,))
    assert cur.rowcount == 1


def test_no_row_level_foreign_keys_on_feature_tables(cur):
    """The loaded tables carry the statement triggers instead of per-row foreign keys."""
    cur.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = ANY(ARRAY["
                "'cim.admin_area', 'cim.building', 'cim.pipe_point', 'cim.pipe_segment', 'cim.green_space', "
                "'cim.streetlight']::regclass[])")
    assert cur.fetchone()[0] == 0
    cur.execute("SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE tgname LIKE '%%_ref' ORDER BY 1, 2")
    names = {n for _, n in cur.fetchall()}
    assert {"building_delivery_ref", "pipe_segment_delivery_ref", "pipe_segment_point_ref"} <= names

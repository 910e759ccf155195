"""The atomic, versioned loader against the real PostGIS test database."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import shapely

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: make the sibling helpers importable
from loadkit import buildings, county_code, delivery, load, points, segments, snapshot  # noqa: E402

from cim import auth
from cim.errors import Forbidden, IngestRejected, InvalidInput
from cim.settings import DatabaseSettings, IngestSettings, Settings
from cim.versions import read as data_versions
from ingest import load as loader
from ingest import pipeline
from ingest.model import Finding, Severity

ADMIN = auth.Principal(name="test", role=auth.Role.admin)


def _versions(conn) -> dict[str, int]:
    with conn.cursor() as cur:
        v = data_versions(cur)
    conn.rollback()
    return v


def _one(conn, sql, params=()):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    conn.rollback()
    return row


def test_load_writes_current_rows_resolves_ends_bumps_versions_and_archives(conn, tmp_path):
    county = county_code()
    report = delivery(tmp_path, [points(20), segments(20), buildings(5)], county)
    before = _versions(conn)
    res = load(conn, report, principal=ADMIN, archive_dir=tmp_path / "archive")
    assert res.state == "current"
    assert res.counts == {"pipe_point": 20, "pipe_segment": 19, "building": 5}
    assert res.scopes == ["building", "pipe_point:JS", "pipe_segment:JS"]
    state, counts, layers, finished = _one(conn, "SELECT state, counts, layers, finished_at FROM cim.delivery "
                                                 "WHERE id = %s", (res.delivery_id,))
    assert state == "current" and counts == res.counts and layers == res.scopes and finished is not None
    # every segment end resolved to the point with its survey number, in this delivery
    unresolved, wrong = _one(conn, """
        SELECT count(*) FILTER (WHERE s.start_point_id IS NULL OR s.end_point_id IS NULL),
               count(*) FILTER (WHERE p1.exp_no <> s.start_exp_no OR p2.exp_no <> s.end_exp_no
                                OR p1.delivery_id <> s.delivery_id)
        FROM cim.pipe_segment s JOIN cim.pipe_point p1 ON p1.id = s.start_point_id
        JOIN cim.pipe_point p2 ON p2.id = s.end_point_id WHERE s.delivery_id = %s""", (res.delivery_id,))
    assert unresolved == 0 and wrong == 0
    assert _one(conn, "SELECT count(*) FROM cim.pipe_segment WHERE delivery_id = %s AND start_point_id IS NOT NULL",
                (res.delivery_id,))[0] == 19
    # polygons became MultiPolygons in EPSG:4490; lineage columns filled
    gtype, srid, layer, row, cty = _one(conn, "SELECT GeometryType(geom), ST_SRID(geom), source_layer, source_row, "
                                              "county_code FROM cim.building WHERE delivery_id = %s "
                                              "ORDER BY source_row LIMIT 1", (res.delivery_id,))
    assert (gtype, srid, layer, row, cty) == ("MULTIPOLYGON", 4490, "房屋", 1, county)
    after = _versions(conn)
    for t in ("pipe_point", "pipe_segment", "building"):
        assert after[t] > before[t], t
    for t in ("streetlight", "green_space", "admin_area"):
        assert after[t] == before[t], t
    archived = tmp_path / "archive" / report.delivery.sha256 / "delivery.zip"
    assert archived.read_bytes() == report.delivery.path.read_bytes()
    assert hashlib.sha256(archived.read_bytes()).hexdigest() == report.delivery.sha256
    assert res.archive_path == str(archived)
    action, detail = _one(conn, "SELECT action, detail FROM cim.audit_log WHERE target = %s ORDER BY id DESC LIMIT 1",
                          (f"delivery:{res.delivery_id}",))
    assert action == "ingest.load" and detail["counts"]["pipe_point"] == 20


def test_a_delivery_retires_its_countys_rows_that_no_delivery_wrote_and_no_other_countys(conn, tmp_path):
    """The rows a load replaces are its county's current rows of its scopes: those of earlier
    deliveries and those written without a delivery (found through their own index, migration
    0120), never another county's."""
    county, other = county_code(), county_code()
    with conn.cursor() as cur:
        for c in (county, other):
            cur.execute("INSERT INTO cim.building (name, county_code, geom) VALUES ('旧楼', %s, ST_Multi("
                        "ST_GeomFromText('POLYGON((112 28, 112.0001 28, 112.0001 28.0001, 112 28))', 4490)))", (c,))
    conn.commit()
    first = load(conn, delivery(tmp_path, [buildings(3)], county, "a.zip"), principal=ADMIN)
    rows = _all(conn, "SELECT county_code, delivery_id, is_current FROM cim.building WHERE county_code IN (%s, %s) "
                      "ORDER BY county_code = %s DESC, delivery_id NULLS FIRST", (county, other, county))
    assert rows == [(county, None, False)] + [(county, first.delivery_id, True)] * 3 + [(other, None, True)]
    second = load(conn, delivery(tmp_path, [buildings(2)], county, "b.zip"), principal=ADMIN)
    assert second.superseded == [first.delivery_id]
    assert _all(conn, "SELECT delivery_id, count(*) FROM cim.building WHERE county_code = %s AND is_current "
                      "GROUP BY 1", (county,)) == [(second.delivery_id, 2)]


def test_new_delivery_supersedes_same_scope_only_and_restore_brings_old_back(conn, tmp_path):
    county = county_code()
    first = load(conn, delivery(tmp_path, [points(10, "JS"), segments(10, "JS"), points(4, "RQ")], county,
                                       "a.zip"), principal=ADMIN)
    second = load(conn, delivery(tmp_path, [points(6, "JS", "W", dx=0.01), segments(6, "JS", "W", dx=0.01)],
                                        county, "b.zip"), principal=ADMIN)
    cur_by_delivery = dict(_all(conn, "SELECT delivery_id, count(*) FROM cim.pipe_point WHERE county_code = %s "
                                      "AND is_current GROUP BY 1", (county,)))
    # the gas points of the first delivery stay current: another scope
    assert cur_by_delivery == {first.delivery_id: 4, second.delivery_id: 6}
    assert _one(conn, "SELECT state FROM cim.delivery WHERE id = %s", (first.delivery_id,))[0] == "current"
    # a third delivery covering the gas network too retires the first completely
    third = load(conn, delivery(tmp_path, [points(3, "RQ", "G")], county, "c.zip"), principal=ADMIN)
    assert third.superseded == [first.delivery_id]
    assert _one(conn, "SELECT state FROM cim.delivery WHERE id = %s", (first.delivery_id,))[0] == "superseded"
    assert _one(conn, "SELECT count(*) FROM cim.pipe_point WHERE delivery_id = %s", (first.delivery_id,))[0] == 14

    before = _versions(conn)
    res = loader.restore(conn, first.delivery_id, principal=ADMIN)
    assert sorted(res.superseded) == [second.delivery_id, third.delivery_id]
    cur_rows = _all(conn, "SELECT delivery_id, network, count(*) FROM cim.pipe_point WHERE county_code = %s "
                          "AND is_current GROUP BY 1, 2 ORDER BY 1, 2", (county,))
    assert cur_rows == [(first.delivery_id, "JS", 10), (first.delivery_id, "RQ", 4)]
    assert _one(conn, "SELECT count(*) FROM cim.pipe_segment WHERE county_code = %s AND is_current "
                      "AND delivery_id = %s", (county, first.delivery_id))[0] == 9
    states = dict(_all(conn, "SELECT id, state FROM cim.delivery WHERE county_code = %s", (county,)))
    assert states == {first.delivery_id: "current", second.delivery_id: "superseded",
                      third.delivery_id: "superseded"}
    after = _versions(conn)
    assert after["pipe_point"] > before["pipe_point"] and after["pipe_segment"] > before["pipe_segment"]
    assert _one(conn, "SELECT action FROM cim.audit_log WHERE target = %s ORDER BY id DESC LIMIT 1",
                (f"delivery:{first.delivery_id}",))[0] == "ingest.restore"


def _all(conn, sql, params=()):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    conn.rollback()
    return rows


def test_same_file_again_is_a_no_op(conn, tmp_path):
    county = county_code()
    content = b"the very same upload"
    first = load(conn, delivery(tmp_path, [points(5)], county, "x.zip", content), principal=ADMIN)
    before = snapshot(conn)
    again = load(conn, delivery(tmp_path, [points(5)], county, "x.zip", content), principal=ADMIN)
    assert again.state == "duplicate" and again.delivery_id == first.delivery_id
    assert "sha256" in again.message_en and "已" in again.message_zh
    assert snapshot(conn) == before
    # the same bytes for another county are a different delivery
    other = load(conn, delivery(tmp_path, [points(5)], county_code(), "x.zip", content), principal=ADMIN)
    assert other.state == "current" and other.delivery_id != first.delivery_id


def test_bad_geometry_found_in_the_database_leaves_everything_unchanged(conn, tmp_path):
    county = county_code()
    load(conn, delivery(tmp_path, [points(5)], county, "ok.zip"), principal=ADMIN)
    before = snapshot(conn)
    bad = points(5)
    bad.frame.loc[2, "geom"] = shapely.Point()  # empty geometry
    with pytest.raises(InvalidInput) as exc:
        load(conn, delivery(tmp_path, [segments(5), bad], county, "bad.zip"), principal=ADMIN)
    assert "#3" in exc.value.en and "empty" in exc.value.en and exc.value.zh
    assert snapshot(conn) == before


def test_constraint_violation_is_a_bilingual_error_and_nothing_is_written(conn, tmp_path):
    county = county_code()
    before = snapshot(conn)
    b = buildings(3)
    b.frame["floors_above"] = [2, -1, 3]
    with pytest.raises(InvalidInput) as exc:
        load(conn, delivery(tmp_path, [points(4), b], county), principal=ADMIN)
    assert "floors_above" in exc.value.en and "约束" in exc.value.zh
    assert snapshot(conn) == before


def test_report_with_errors_is_refused_and_can_be_recorded_as_rejected(conn, tmp_path):
    county = county_code()
    report = delivery(tmp_path, [points(4)], county)
    report.add(Finding("Q01", Severity.error, "JSPOINT", 2, "JS1", "exp_no", "JS1", "点号重复", "duplicate point"))
    before = snapshot(conn)
    with pytest.raises(IngestRejected):
        load(conn, report, principal=ADMIN)
    assert snapshot(conn) == before
    did = loader.record_rejected(conn, report, principal=ADMIN)
    assert _one(conn, "SELECT state, county_code FROM cim.delivery WHERE id = %s", (did,)) == ("rejected", county)
    assert snapshot(conn)["versions"] == before["versions"]
    with pytest.raises(Exception) as exc:
        loader.restore(conn, did, principal=ADMIN)
    assert "rejected" in str(exc.value)


def test_uploader_may_only_load_its_own_county(conn, db_url, tmp_path):
    county = county_code()
    uploader = auth.Principal(name="u", role=auth.Role.uploader, token_id=1, counties=frozenset({"430000"}))
    settings = Settings(db=DatabaseSettings(database_url=db_url, home=tmp_path / "home"),
                        ingest=IngestSettings(archive_dir=tmp_path / "a"))
    before = snapshot(conn)
    with pytest.raises(Forbidden):
        pipeline.run(conn, [], settings=settings, principal=uploader, county=county,
                     delivery=delivery(tmp_path, [points(3)], county).delivery)
    assert snapshot(conn) == before and not (tmp_path / "a").exists()


def test_list_deliveries_newest_first(conn, tmp_path):
    county = county_code()
    a = load(conn, delivery(tmp_path, [points(3)], county, "1.zip"), principal=ADMIN)
    b = load(conn, delivery(tmp_path, [points(3)], county, "2.zip"), principal=ADMIN)
    with conn.cursor() as cur:
        rows = loader.list_deliveries(cur, county)
    assert [r["id"] for r in rows] == [b.delivery_id, a.delivery_id]
    assert [r["state"] for r in rows] == ["current", "superseded"]


def test_segments_follow_replaced_points_and_restore(conn, tmp_path):
    """A point-only delivery replaces a network's points while its segments stay current: the
    segments then refer to the new points of their point numbers; restoring the first delivery
    points them back (section profiles and 3D Tiles read the ground through these ids)."""
    county = county_code()
    first = load(conn, delivery(tmp_path, [points(5, "JS"), segments(5, "JS")], county, "a.zip"),
                        principal=ADMIN)
    ends_sql = ("SELECT s.start_exp_no, sp.delivery_id, ep.delivery_id FROM cim.pipe_segment s "
                "JOIN cim.pipe_point sp ON sp.id = s.start_point_id JOIN cim.pipe_point ep ON ep.id = s.end_point_id "
                "WHERE s.county_code = %s AND s.is_current ORDER BY 1")
    assert {(a, b) for _, a, b in _all(conn, ends_sql, (county,))} == {(first.delivery_id, first.delivery_id)}
    # new survey of the points only: JS0..JS3 (JS4 no longer surveyed)
    second = load(conn, delivery(tmp_path, [points(4, "JS", dx=1e-6)], county, "b.zip"), principal=ADMIN)
    rows = _all(conn, ends_sql, (county,))
    assert [(no, a, b) for no, a, b in rows] == [
        ("JS0", second.delivery_id, second.delivery_id), ("JS1", second.delivery_id, second.delivery_id),
        ("JS2", second.delivery_id, second.delivery_id),
        ("JS3", second.delivery_id, first.delivery_id)]       # JS4 has no current point: keeps its own
    loader.restore(conn, first.delivery_id, principal=ADMIN)
    assert {(a, b) for _, a, b in _all(conn, ends_sql, (county,))} == {(first.delivery_id, first.delivery_id)}

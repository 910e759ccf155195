"""The stored membership of features in admin areas (cimplus/healthcheck/membership.py, migrations
0082 and 0130): built by a run, read by later runs only while current, updated in place after a new
delivery (equal to a set built anew), built anew after a change of the admin areas, one set per
built-up upload, equal to cutting the features on the fly; the deletion of old sets skips a scope
being refreshed.

Each test that changes data has a database of its own seeded with the fixture county of
conftest.py (the shared one keeps its hand-computed values).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest

from cim import auth
from cimplus.healthcheck import areas, catalog, membership
from cimplus.healthcheck.catalog import ADMIN_LEVELS
from cimplus.healthcheck.service import HealthCheck
from cimplus.healthcheck.template import Expander, ledger_present
from layers.catalog import load_catalog
from tests.cimplus.healthcheck import conftest as fx
from tests.cimplus.healthcheck.conftest import COUNTY, K1, K2, K3, S1, S2, box, line, seed, write_builtup
from tests.cimplus.healthcheck.test_indicators import EXPECTED

PIPE_SETS = {("pipe_segment", "area"), ("pipe_segment", "builtup")}
PARTS_INDICATORS = sorted(i.id for i in catalog.load().indicators if membership.sources([i], load_catalog()))


class County:
    """A database of its own holding the fixture county and its 2025 inputs; runs in this process."""

    def __init__(self, url: str, tmp_path) -> None:
        self.url = url
        self.hc = HealthCheck(load_catalog())
        conn = psycopg2.connect(url)
        try:
            with conn, conn.cursor() as cur:
                seed(cur)
                cur.execute("ANALYZE")
            pop = fx.write_population(tmp_path / "常住人口.xlsx", [(K1, "桃园社区", 1000, 2025), (K2, "金霞社区", 2000, 2025),
                                                                   (COUNTY, "测试区", 5000, 2025)])
            self.hc.load_input(conn, pop, principal=PRINCIPAL)
            self.load_builtup(box(0, 0, 1500, 1000), tmp_path / "建成区.geojson")
        finally:
            conn.close()

    def load_builtup(self, wkt: str, path) -> None:
        """A built-up area upload (year 2025)."""
        conn = psycopg2.connect(self.url)
        try:
            self.hc.load_input(conn, write_builtup(path, wkt), principal=PRINCIPAL)
        finally:
            conn.close()

    def run(self) -> dict:
        """A run of 2025 (every level): its id, values by (indicator, area code), inputs, data versions."""
        conn = psycopg2.connect(self.url)
        try:
            run_id = self.hc.run(conn, county=COUNTY, year=2025, principal=PRINCIPAL)["run_id"]
            with conn.cursor() as cur:
                cur.execute("SELECT inputs, data_versions, summary FROM cim.healthcheck_run WHERE id = %s", (run_id,))
                inputs, data_versions, summary = cur.fetchone()
                cur.execute("SELECT indicator, area_code, value FROM cim.healthcheck_value WHERE run_id = %s", (run_id,))
                values = {(r[0], r[1]): r[2] for r in cur.fetchall()}
        finally:
            conn.close()
        return {"run_id": run_id, "values": values, "inputs": inputs, "data_versions": data_versions,
                "summary": summary, "sets": {(s["table"], s["kind"]): s for s in summary["parts"]["sets"]},
                "refreshed": {(d["table"], d["kind"]) for d in summary["parts"]["refresh"]["refreshed"]}}

    def execute(self, sql: str, params: tuple = ()) -> None:
        """Change data as a delivery or an admin-area update does (committed)."""
        conn = psycopg2.connect(self.url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql, params)
        finally:
            conn.close()


PRINCIPAL = auth.Principal(name="test:membership", role=auth.Role.admin)


@pytest.fixture(scope="module")
def checked(make_database, tmp_path_factory):
    """A county run twice without changes in between (read only afterwards)."""
    county = County(make_database("cim_hc_parts"), tmp_path_factory.mktemp("hc-parts"))
    return county, county.run(), county.run()


@pytest.fixture
def county(make_database, tmp_path):
    """A county of its own for a test that changes data."""
    return County(make_database("cim_hc_parts"), tmp_path)


def test_a_run_builds_the_sets_and_records_them(checked):
    _, first, second = checked
    built = PIPE_SETS | {("green_space", "area"), ("green_space", "builtup"), ("road", "area"), ("road", "builtup")}
    assert first["refreshed"] == built
    assert all(d["parts"] > 0 for d in first["summary"]["parts"]["refresh"]["refreshed"])
    assert first["summary"]["parts_refresh_s"] >= 0
    assert set(first["sets"]) == built
    for (table, _), s in first["sets"].items():     # the run read sets of exactly the data versions it records
        assert s["versions"] == {table: first["data_versions"][table],
                                 "admin_area": first["data_versions"]["admin_area"]}
    for ind in PARTS_INDICATORS:
        for area, want in EXPECTED[ind].items():
            if isinstance(want, float | int):
                assert first["values"][(ind, area)] == pytest.approx(want, rel=1e-3, abs=1e-6), (ind, area)
    # nothing changed: the next run refreshes nothing and reads the same sets
    assert second["refreshed"] == set() and second["summary"]["parts"]["refresh"]["current"] == len(built)
    assert {k: s["set_id"] for k, s in second["sets"].items()} == {k: s["set_id"] for k, s in first["sets"].items()}


def _compute(url: str, ind_id: str, *, stored: bool, year: int = 2025) -> dict[str, tuple]:
    """One indicator for every area in one transaction, from the stored sets or cut on the fly."""
    cat, layers = catalog.load(), load_catalog()
    ind = next(i for i in cat.indicators if i.id == ind_id)
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            aset = areas.prepare(cur, [COUNTY], list(ADMIN_LEVELS), year)
            present, _ = ledger_present(cur, cat.hazard_ledger)
            sets, _ = membership.usable(cur, aset, membership.sources([ind], layers)) if stored else ({}, [])
            stmt = Expander(layers, cat, aset.scope(year, present, sets)).expand(ind.formula or "", ind)
            assert (not stmt.needs) == bool(sets), stmt.needs     # the stored path cuts nothing
            aset.ensure(cur, stmt.needs)
            cur.execute(f"SELECT a.code, x.value, x.numerator, x.denominator FROM ({stmt.sql}) x "
                        "JOIN pg_temp.hc_area a ON a.id = x.area_id", stmt.params)
            return {r[0]: r[1:] for r in cur.fetchall()}
    finally:
        conn.rollback()
        conn.close()


def test_stored_sets_equal_cutting_on_the_fly(checked):
    county, _, _ = checked
    assert len(PARTS_INDICATORS) >= 12
    for ind in PARTS_INDICATORS:
        stored, fly = _compute(county.url, ind, stored=True), _compute(county.url, ind, stored=False)
        assert stored.keys() == fly.keys(), ind
        for code, row in stored.items():
            for got, want in zip(row, fly[code], strict=True):
                assert (got is None) == (want is None), (ind, code, row, fly[code])
                if want is not None:
                    assert float(got) == pytest.approx(float(want), rel=1e-9, abs=1e-9), (ind, code, row, fly[code])


def _deliver_shorter_y1(county: County) -> None:
    """As a delivery does: the old storm drain Y1 (800 m in K1) is no longer current, a new one of 400 m is."""
    county.execute("UPDATE cim.pipe_segment SET is_current = false WHERE code = 'Y1'; "
                   f"INSERT INTO cim.pipe_segment (network, subtype, code, start_exp_no, end_exp_no, material, "
                   f"install_year, county_code, geom) VALUES ('PS', 'YS', 'Y1', 'Y1a', 'Y1c', 'T-PK', 2010, %s, {fx.G})",
                   (COUNTY, line((100, 250), (500, 250))))


def _current_sets(url: str) -> tuple[dict[tuple[str, str], int], list[dict]]:
    cat, layers = catalog.load(), load_catalog()
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            aset = areas.prepare(cur, [COUNTY], list(ADMIN_LEVELS), 2025)
            return membership.usable(cur, aset, membership.sources(cat.indicators, layers))
    finally:
        conn.rollback()
        conn.close()


def test_a_new_delivery_gives_the_new_value(county):
    before = county.run()
    _deliver_shorter_y1(county)
    # until a refresh, the pipe sets are stale and never read: a statement cuts the pipes itself
    sets, described = _current_sets(county.url)
    assert not PIPE_SETS & set(sets) and ("green_space", "area") in sets
    assert all(d["table"] != "pipe_segment" for d in described)
    assert _compute(county.url, "drainage_density_ys", stored=True)[K1][0] == pytest.approx(1.0, rel=1e-4)
    # two refreshes at once (two runs starting together): the pipe sets are brought up to date once, in
    # place: the parts of the old Y1 deleted, the new Y1 (the one row the sets do not hold) cut
    wanted = membership.sources(catalog.load().indicators, load_catalog())
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda _: _refresh(county.url, wanted), range(2)))
    updated = [d for r in done for d in r["refreshed"]]
    assert sorted((d["table"], d["kind"]) for d in updated) == sorted(PIPE_SETS)
    assert sum(r["current"] for r in done) == 2 * len(wanted) - len(PIPE_SETS)
    assert all(d["mode"] == "update" and d["changed"] == 1 and d["dropped"] >= 1 for d in updated), updated
    after = county.run()
    assert after["refreshed"] == set()
    assert {after["sets"][k]["set_id"] for k in PIPE_SETS} == {d["set_id"] for d in updated}
    assert all(after["sets"][k]["set_id"] == before["sets"][k]["set_id"] for k in PIPE_SETS)
    assert after["sets"][("green_space", "area")] == before["sets"][("green_space", "area")]   # still current
    assert after["sets"][("pipe_segment", "area")]["versions"]["pipe_segment"] == after["data_versions"]["pipe_segment"]
    assert after["data_versions"]["pipe_segment"] > before["data_versions"]["pipe_segment"]
    got = after["values"]
    # storm drains in the built-up part: K1 (0.5 km²) holds 400 m of the new Y1 + 100 m of Y2; the county
    # (1.5 km²) 400 + 500 + 100 m
    assert got[("drainage_density_ys", K1)] == pytest.approx(1.0, rel=1e-4)
    assert got[("drainage_density_ys", COUNTY)] == pytest.approx(1.0 / 1.5, rel=1e-4)
    assert got[("drainage_density_ys", K3)] == pytest.approx(EXPECTED["drainage_density_ys"][K3], rel=1e-4)
    # aged drains: K1 holds Y1 (T-PK, always aged) 400 m + Y2 (1970) 100 m, all aged; the county 2,000 m of
    # drains of which 900 m aged (Y1 400 + Y2 500)
    assert got[("aged_share_drainage", K1)] == pytest.approx(100.0, rel=1e-4)
    assert got[("aged_share_drainage", COUNTY)] == pytest.approx(100 * 900 / 2000, rel=1e-4)
    # the features behind a value come from the current set too
    conn = psycopg2.connect(county.url)
    try:
        feats = county.hc.features(conn, after["run_id"], "aged_share_drainage", K1)
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM cim.pipe_segment WHERE is_current AND code IN ('Y1', 'Y2') ORDER BY id")
            current = [r[0] for r in cur.fetchall()]
    finally:
        conn.close()
    assert feats["count"] == 2 and not feats["data_changed"] and sorted(feats["ids"]) == current
    # one set per kind, and no part without its set
    conn = psycopg2.connect(county.url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM cim.healthcheck_part_set WHERE source_table = 'pipe_segment' ORDER BY id")
            assert [r[0] for r in cur.fetchall()] == sorted(after["sets"][k]["set_id"] for k in PIPE_SETS)
            cur.execute("SELECT count(*) FROM cim.healthcheck_part p WHERE NOT EXISTS "
                        "(SELECT 1 FROM cim.healthcheck_part_set s WHERE s.id = p.set_id)")
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()


def _refresh(url: str, wanted: set[tuple[str, str]]) -> dict:
    conn = psycopg2.connect(url)
    try:
        return membership.refresh(conn, [COUNTY], 2025, wanted)
    finally:
        conn.close()


def _parts(url: str) -> dict[tuple[str, str], list[tuple]]:
    """The stored parts of every set: (table, kind) → sorted (feature, network, area, measure, share, cut)."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT s.source_table, s.kind, p.feature_id, p.network, p.area_id, round(p.measure::numeric, 6), "
                        "       round(p.share::numeric, 9), ST_AsText(ST_SnapToGrid(p.part, 1e-9)) "
                        "  FROM cim.healthcheck_part p JOIN cim.healthcheck_part_set s ON s.id = p.set_id")
            out: dict[tuple[str, str], list[tuple]] = {}
            for table, kind, *row in cur.fetchall():
                out.setdefault((table, kind), []).append(tuple(row))
            return {k: sorted(v, key=repr) for k, v in out.items()}
    finally:
        conn.close()


def test_an_update_in_place_equals_a_new_build(county):
    county.run()
    wanted = membership.sources(catalog.load().indicators, load_catalog())
    # a delivery closes Y1 and adds a new one; a row's geometry is changed in place (a new row version:
    # its xmin changes) and another row is deleted, as a repair by hand would
    _deliver_shorter_y1(county)
    county.execute(f"UPDATE cim.pipe_segment SET geom = {fx.G} WHERE code = 'Y2' AND is_current",
                   (line((100, 600), (100, 1000)),))
    county.execute("DELETE FROM cim.pipe_segment WHERE code = 'W1'")
    county.execute("UPDATE cim.road SET name = name")     # every road: a new row version, the same geometry
    done = _refresh(county.url, wanted)
    modes = {(d["table"], d["kind"]): (d["mode"], d["changed"]) for d in done["refreshed"]}
    assert modes == {("pipe_segment", "area"): ("update", 2), ("pipe_segment", "builtup"): ("update", 2),
                     ("road", "area"): ("update", modes[("road", "area")][1]),
                     ("road", "builtup"): ("update", modes[("road", "builtup")][1])}
    assert modes[("road", "area")][1] > 0
    updated = _parts(county.url)
    # the same sets built from nothing
    county.execute("DELETE FROM cim.healthcheck_part; DELETE FROM cim.healthcheck_part_set")
    rebuilt = _refresh(county.url, wanted)
    assert {d["mode"] for d in rebuilt["refreshed"]} == {"build"} and len(rebuilt["refreshed"]) == len(wanted)
    assert _parts(county.url) == updated


def test_prune_skips_a_scope_being_refreshed(county):
    county.run()
    county.execute("UPDATE cim.admin_area SET name = name WHERE code = %s", (K1,))   # older admin areas: prunable
    holder = psycopg2.connect(county.url)
    try:
        with holder.cursor() as cur:        # a refresh of the county's scope holds its lock
            cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (membership.lock_key([COUNTY]),))
        conn = psycopg2.connect(county.url)
        try:
            assert membership.prune(conn) == 0
            with holder.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", (membership.lock_key([COUNTY]),))
            assert membership.prune(conn) == 6
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM cim.healthcheck_part")
                assert cur.fetchone()[0] == 0
        finally:
            conn.close()
    finally:
        holder.close()


def test_changed_admin_areas_refresh_the_sets(county):
    county.run()
    county.execute("UPDATE cim.admin_area SET is_current = false WHERE code IN (%s, %s)", (K1, K2))
    for code, name, y0, y1 in ((K1, "桃园社区", 0, 200), (K2, "金霞社区", 200, 1000)):   # the boundary moves to y = 200
        county.execute(f"INSERT INTO cim.admin_area (code, name, level, parent_code, county_code, geom) "
                       f"VALUES (%s, %s, 'community', %s, %s, ST_Multi({fx.G}))", (code, name, S1, COUNTY, box(0, y0, 1000, y1)))
    after = county.run()
    assert PIPE_SETS | {("green_space", "area"), ("road", "area")} <= after["refreshed"]
    got = after["values"]
    # Y1 (800 m) and 100 m of Y2 now lie in K2 (built-up part 0.8 km²); K1 (0.2 km²) has no storm drain
    assert got[("drainage_density_ys", K1)] == pytest.approx(0.0, abs=1e-9)
    assert got[("drainage_density_ys", K2)] == pytest.approx(0.9 / 0.8, rel=1e-4)
    assert got[("drainage_density_ys", S1)] == pytest.approx(EXPECTED["drainage_density_ys"][S1], rel=1e-4)
    assert got[("drainage_density_ys", S2)] == pytest.approx(EXPECTED["drainage_density_ys"][S2], rel=1e-4)


def test_a_new_builtup_upload_makes_a_set_of_its_own(county, tmp_path):
    first = county.run()
    county.load_builtup(box(0, 0, 1000, 1000), tmp_path / "建成区2.geojson")
    after = county.run()
    assert after["refreshed"] == {("pipe_segment", "builtup"), ("green_space", "builtup"), ("road", "builtup")}
    assert after["sets"][("pipe_segment", "area")] == first["sets"][("pipe_segment", "area")]
    new, old = after["sets"][("pipe_segment", "builtup")], first["sets"][("pipe_segment", "builtup")]
    assert new["builtup_inputs"] == after["inputs"]["builtup"]["input_ids"] != old["builtup_inputs"]
    # the built-up area is now [0, 1000] × [0, 1000]: the county's storm drains in it are Y1 800 m + Y2 100 m
    assert after["values"][("drainage_density_ys", COUNTY)] == pytest.approx(0.9, rel=1e-4)
    assert after["values"][("drainage_density_ys", K3)] is None       # no built-up part left in K3
    conn = psycopg2.connect(county.url)
    try:
        with conn.cursor() as cur:      # the earlier upload's sets stay: a run of a year that uses it reads them
            cur.execute("SELECT count(*) FROM cim.healthcheck_part_set WHERE kind = 'builtup'")
            assert cur.fetchone()[0] == 6
    finally:
        conn.close()

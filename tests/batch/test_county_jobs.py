"""Hazard scans and health-check runs on Dask, one task per county, give what the single-process
paths give on the same database state: the ledger entries (rule, facilities, evidence …) of
``HazardService.run_scan`` county by county, and the indicator values of ``HealthCheck.run`` with
``county``. The state is made identical by cloning one seeded database (``CREATE DATABASE …
TEMPLATE``): the direct path runs on one clone, Dask on the other.

Two counties, 430791 and 430792 (3 km apart), each the hand-computable county of the health-check
tests (admin areas, buildings, green space, pipes with gas lines close to walls, roads,
streetlights), every facility code prefixed with its county's (facility keys are unique province-wide)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg2
import pytest

from batch import hazards as batch_hazards
from batch import healthcheck as batch_hc
from cim.auth import Principal, Role
from cim.settings import DatabaseSettings, HazardSettings, Settings
from cimplus.hazards.service import HazardService
from cimplus.healthcheck.service import HealthCheck
from layers.catalog import load_catalog
from tests.cimplus.healthcheck import conftest as hc_fixture

ROOT = Path(__file__).resolve().parents[2]
CIM = Path(sys.executable).parent / "cim"
COUNTIES = {"430791": 0.0, "430792": 3000.0}      # county → metres east of the fixture county's place
WHO = Principal(name="cli:batch-test", role=Role.admin)
G = "ST_Transform(ST_Translate(ST_GeomFromText(%s, 4546), %s, 0), 4490)"


def _seed(cur, county: str, dx: float) -> None:
    def code(c: str) -> str:
        return county + c[len(hc_fixture.COUNTY):] if c.startswith(hc_fixture.COUNTY) else c

    for c, name, level, parent, wkt in hc_fixture.ADMIN:
        cur.execute(f"INSERT INTO cim.admin_area (code, name, level, parent_code, county_code, geom) "
                    f"VALUES (%s, %s, %s, %s, %s, ST_Multi({G}))", (code(c), name, level, code(parent), county, wkt, dx))
    for c, use, grade, year, era, floors, height, lift, wkt in hc_fixture.BUILDINGS:
        cur.execute(f"INSERT INTO cim.building (code, use_code, appraisal_grade, build_year, build_era, floors_above, "
                    f"height_m, has_lift, county_code, geom) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, "
                    f"ST_Multi({G}))", (county + c, use, grade, year, era, floors, height, lift, county, wkt, dx))
    for c, cls, sub, wkt in hc_fixture.GREEN:
        cur.execute(f"INSERT INTO cim.green_space (code, class_code, subclass_code, county_code, geom) "
                    f"VALUES (%s, %s, %s, %s, ST_Multi({G}))", (county + c, cls, sub, county, wkt, dx))
    for net, sub, c, material, year, wkt in hc_fixture.PIPES:
        cur.execute(f"INSERT INTO cim.pipe_segment (network, subtype, code, start_exp_no, end_exp_no, material, "
                    f"install_year, county_code, geom) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, {G})",
                    (net, sub, county + c, county + c + "a", county + c + "b", material, year, county, wkt, dx))
    for name, cls, wkt in hc_fixture.ROADS:
        cur.execute(f"INSERT INTO cim.road (name, road_class, county_code, geom) VALUES (%s, %s, %s, ST_Multi({G}))",
                    (name, cls, county, wkt, dx))
    for pole, cls, status, wkt in hc_fixture.LIGHTS:
        cur.execute(f"INSERT INTO cim.streetlight (pole_no, road_class, status, county_code, geom) "
                    f"VALUES (%s, %s, %s, %s, {G})", (county + pole, cls, status, county, wkt, dx))


@pytest.fixture(scope="module")
def twins(make_database, db_url):
    """``twins()``: two new databases in the same state (clones of one seeded database)."""
    seeded = make_database("cim_bcty")
    conn = psycopg2.connect(seeded)
    with conn, conn.cursor() as cur:
        for county, dx in COUNTIES.items():
            _seed(cur, county, dx)
        cur.execute("ANALYZE")
    conn.close()
    admin = psycopg2.connect(db_url)
    admin.autocommit = True
    template = urlparse(seeded).path.lstrip("/")
    made: list[str] = []

    def clone() -> str:
        name = f"cim_bcty_{uuid.uuid4().hex[:8]}"
        for attempt in range(50):          # the template's last session may still be closing
            try:
                with admin.cursor() as cur:
                    cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                break
            except psycopg2.errors.ObjectInUse:
                if attempt == 49:
                    raise
                time.sleep(0.2)
        made.append(name)
        return urlunparse(urlparse(seeded)._replace(path="/" + name))

    yield lambda: (clone(), clone())
    with admin.cursor() as cur:
        for name in made:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


def _rows(url: str, sql: str) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


LEDGER = ("SELECT county_code, number, rule_id, rule_key, facility_type, facility_refs, facility_keys, street_code, "
          "community_code, title, description, location, hazard_class, risk_level, status, condition_cleared, "
          "evidence, ST_AsEWKT(shape), ST_AsEWKT(geom), found_by FROM cim.hazard ORDER BY county_code, rule_key, number")


def _direct_scans(url: str) -> dict[str, dict]:
    """What ``cim hazards scan`` does, county by county: the scan, then its audit record."""
    svc = HazardService(Settings(db=DatabaseSettings(database_url=url), hazards=HazardSettings()))
    try:
        out = {}
        for county in COUNTIES:
            report = svc.run_scan(county, actor=WHO.name)
            svc.audit_scan(WHO, report)
            out[county] = report.totals()
        return out
    finally:
        svc.close()


def test_hazard_scans_on_dask_equal_the_direct_scans(twins, client):
    direct_url, dask_url = twins()
    direct = _direct_scans(direct_url)
    db_settings = DatabaseSettings(database_url=dask_url)
    counties = batch_hazards.plan(db_settings, None, None)
    assert counties == sorted(COUNTIES)
    seen: list[tuple[int, int]] = []
    results = batch_hazards.run(client, db_settings, HazardSettings(), counties, who=WHO,
                                progress=lambda d, t: seen.append((d, t)))
    assert [r.county for r in results] == sorted(COUNTIES) and all(r.error is None for r in results)
    assert {r.county: r.value.totals() for r in results} == direct
    assert all(t["new"] > 0 for t in direct.values()), "the fixture's gas lines near walls are found"
    assert seen[0] == (0, 2) and seen[-1] == (2, 2)

    ledger = _rows(direct_url, LEDGER)
    assert len(ledger) == sum(t["new"] for t in direct.values())
    assert {r[0] for r in ledger} == set(COUNTIES)
    assert _rows(dask_url, LEDGER) == ledger, "same entries: rule, facilities, evidence, place, status"
    audit = "SELECT actor, county_code FROM cim.audit_log WHERE action = 'hazard.scan' ORDER BY county_code"
    assert _rows(dask_url, audit) == _rows(direct_url, audit) == [(WHO.name, c) for c in sorted(COUNTIES)]

    again = batch_hazards.run(client, db_settings, HazardSettings(), counties, who=WHO)
    for r in again:                                     # a rescan finds the same entries again
        assert r.value.totals()["unchanged"] == direct[r.county]["new"] and r.value.totals()["new"] == 0
    assert _rows(dask_url, LEDGER) == ledger


VALUES = ("SELECT r.counties, r.year, r.levels, v.indicator, v.area_code, v.area_name, v.area_level, v.parent_code, "
          "v.county_code, v.state, v.value, v.numerator, v.denominator, v.threshold, v.op, v.pass, v.class_no, "
          "v.color, v.reason_code, v.reason_zh, v.reason_en, v.detail FROM cim.healthcheck_value v "
          "JOIN cim.healthcheck_run r ON r.id = v.run_id WHERE r.state = 'done' "
          "ORDER BY v.county_code, v.indicator, v.area_code")


def test_health_check_runs_on_dask_equal_the_direct_runs(twins, client):
    direct_url, dask_url = twins()
    hc = HealthCheck(load_catalog())
    conn = psycopg2.connect(direct_url)
    try:
        direct = {c: hc.run(conn, county=c, year=2025, levels=None, principal=WHO) for c in COUNTIES}
    finally:
        conn.close()
    db_settings = DatabaseSettings(database_url=dask_url)
    counties, year, levels = batch_hc.plan(db_settings, hc, None, 2025, None)
    assert counties == sorted(COUNTIES) and year == 2025 and levels == ["county", "street", "community"]
    results = batch_hc.run(client, db_settings, hc, counties, year=year, levels=levels, who=WHO)
    assert all(r.error is None for r in results), [r.error for r in results]
    for r in results:
        ours, theirs = r.value, direct[r.county]
        assert (ours["values"], ours["computed"], ours["failing"]) == \
            (theirs["values"], theirs["computed"], theirs["failing"])
        assert theirs["computed"] > 20
    values = _rows(direct_url, VALUES)
    assert len(values) == sum(s["values"] for s in direct.values())
    assert {(v[0][0], v[8]) for v in values} == {(c, c) for c in COUNTIES}, "one run per county"
    assert _rows(dask_url, VALUES) == values, "same values, verdicts and classes"
    classes = "SELECT counties, state, classes, inputs FROM cim.healthcheck_run ORDER BY counties"
    assert _rows(dask_url, classes) == _rows(direct_url, classes)


def _cim(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CIM), "batch", *args], capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env=dict(os.environ, CIM_DATABASE_URL=url))


def test_cli_county_jobs(twins, client):
    url, _ = twins()
    address = client.scheduler.address
    res = _cim(url, "hazards", "--dry-run", "--json", "--scheduler", address)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert [o["county"] for o in out] == sorted(COUNTIES) and all(o["report"]["totals"]["new"] > 0 for o in out)
    assert _rows(url, "SELECT count(*) FROM cim.hazard") == [(0,)], "a dry run writes nothing"

    res = _cim(url, "hazards", "--counties", "430792", "--scheduler", address)
    assert res.returncode == 0, res.stderr
    assert "430792" in res.stdout and "合计 / total" in res.stdout and "430791" not in res.stdout
    assert _rows(url, "SELECT DISTINCT county_code FROM cim.hazard") == [("430792",)]

    res = _cim(url, "healthcheck", "--year", "2025", "--levels", "county,street", "--json", "--scheduler", address)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert [o["county"] for o in out] == sorted(COUNTIES) and all(o["summary"]["computed"] > 0 for o in out)
    runs = _rows(url, "SELECT counties, year, levels, state, created_by FROM cim.healthcheck_run ORDER BY counties")
    assert [r[:4] for r in runs] == [([c], 2025, ["county", "street"], "done") for c in sorted(COUNTIES)]
    assert all(r[4].startswith("cli:") for r in runs)


def test_cli_county_jobs_reject_bad_input_before_any_task(twins, client):
    url, _ = twins()
    address = client.scheduler.address
    res = _cim(url, "hazards", "--counties", "430791,439999", "--scheduler", address)
    assert res.returncode == 1 and "439999" in res.stderr and "Traceback" not in res.stderr
    res = _cim(url, "hazards", "--rules", "NO-SUCH-RULE", "--scheduler", address)
    assert res.returncode == 2 and "NO-SUCH-RULE" in res.stderr
    res = _cim(url, "healthcheck", "--year", "2025", "--levels", "province", "--scheduler", address)
    assert res.returncode == 1 and "province" in res.stderr
    res = _cim(url, "hazards", "--scheduler", "tcp://127.0.0.1:9")
    assert res.returncode == 2 and "Dask" in res.stderr and "Traceback" not in res.stderr
    assert _rows(url, "SELECT count(*) FROM cim.hazard") == [(0,)]
    assert _rows(url, "SELECT count(*) FROM cim.healthcheck_run") == [(0,)]

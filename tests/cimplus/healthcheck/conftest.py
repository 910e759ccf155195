"""A small county whose every indicator value can be computed by hand (see ``EXPECTED`` in
test_indicators.py), in a database of its own (runs are immutable: they never leave it).

Geometry is laid out in metres in CGCS2000 3° GK CM 111E (EPSG:4546, the run's metric CRS here)
from the origin (E0, N0) and stored in EPSG:4490 like every feature. Layout (local metres):

* county 430799 = [0, 2000] × [0, 1000]; streets 430799001 = x < 1000, 430799002 = x > 1000;
  communities K1 430799001001 = x < 1000, y < 500; K2 430799001002 = x < 1000, y > 500;
  K3 430799002001 = the whole of street 2;
* buildings B1–B8 (10 × 10 m; B8 20 × 10 m), parks P1 (G11, 100 × 100 m), P2 (G12, 50 × 50 m),
  P3 (G14, 40 × 25 m, too small to serve), protective and attached green space;
* drainage (YS, WS, HS), gas, water pipes with materials and install years; roads R1–R4 and
  streetlights L1–L10; inputs (written as real files by the tests): population K1 1000,
  K2 2000, county 5000; built-up area [0, 1500] × [0, 1000], year 2025;
* entries of the hazard ledger (cim.hazard, migration 0070) next to buildings: open gas entries by
  B3, B4 (条件已消除, still open), B5 (a gas station) and B7; a closed one by B1, a dismissed one by
  B8, an open one 3 m from B1, an open water entry by B2 and an open gas entry by the shop B6.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psycopg2
import pytest
import testkit

E0, N0 = 567_000.0, 3_214_000.0
COUNTY, S1, S2 = "430799", "430799001", "430799002"
K1, K2, K3 = "430799001001", "430799001002", "430799002001"


def box(x0: float, y0: float, x1: float, y1: float) -> str:
    """WKT of a local box (EPSG:4546 metres)."""
    a, b, c, d = E0 + x0, N0 + y0, E0 + x1, N0 + y1
    return f"POLYGON(({a} {b},{c} {b},{c} {d},{a} {d},{a} {b}))"


def line(*pts: tuple[float, float]) -> str:
    """WKT of a local line."""
    return "LINESTRING(" + ",".join(f"{E0 + x} {N0 + y}" for x, y in pts) + ")"


def point(x: float, y: float) -> str:
    """WKT of a local point."""
    return f"POINT({E0 + x} {N0 + y})"


G = "ST_Transform(ST_GeomFromText(%s, 4546), 4490)"

ADMIN = [(COUNTY, "测试区", "county", "430700", box(0, 0, 2000, 1000)),
         (S1, "东风街道", "street", COUNTY, box(0, 0, 1000, 1000)),
         (S2, "西湖街道", "street", COUNTY, box(1000, 0, 2000, 1000)),
         (K1, "桃园社区", "community", S1, box(0, 0, 1000, 500)),
         (K2, "金霞社区", "community", S1, box(0, 500, 1000, 1000)),
         (K3, "滨江社区", "community", S2, box(1000, 0, 2000, 1000))]

# code, use, grade, build_year, build_era, floors, height, has_lift, footprint
BUILDINGS = [
    ("B1", "ZZ", "C", 1995, None, 6, 18.0, None, box(100, 100, 110, 110)),
    ("B2", "ZZ", "D", 2010, None, 3, 9.0, None, box(200, 100, 210, 110)),
    ("B3", "ZZ", "B", None, "2", 5, None, True, box(300, 100, 310, 110)),
    ("B4", "ZZ", "A", 2023, None, 30, 90.0, None, box(100, 600, 110, 610)),
    ("B5", "ZZ", "C", 2022, None, 28, None, False, box(1500, 500, 1510, 510)),
    ("B6", "SC", "D", 1980, None, 1, 6.0, None, box(1600, 500, 1610, 510)),
    ("B7", "ZZ", None, 2005, None, 2, 6.0, None, box(1200, 200, 1210, 210)),
    ("B8", "ZZ", "A", 2015, None, 2, 6.0, None, box(715, 60, 735, 70)),
]
# code, class, subclass, polygon
GREEN = [("P1", "G1", "G11", box(0, 900, 100, 1000)),
         ("P2", "G1", "G12", box(380, 50, 430, 100)),
         ("P3", "G1", "G14", box(1300, 300, 1340, 325)),
         ("F1", "G2", None, box(1550, 600, 1650, 650)),
         ("A1", "XG", "RG", box(1400, 800, 1600, 850)),
         ("E1", "EG", "EG1", box(600, 600, 700, 700))]
# network, subtype, code, material, install_year, line
PIPES = [
    ("PS", "YS", "Y1", "T-PK", 2010, line((100, 250), (900, 250))),
    ("PS", "YS", "Y2", "T-GJ", 1970, line((900, 250), (1400, 250))),
    ("PS", "YS", "Y3", "T-GJ", 2000, line((1400, 250), (1800, 250))),
    ("PS", "WS", "W1", "T-GJ", 2000, line((100, 750), (600, 750))),
    ("PS", "HS", "H1", "T-GJ", 2000, line((1100, 900), (1300, 900))),
    ("RQ", None, "Ga", "G", 1990, line((1150, 211.5), (1250, 211.5))),
    ("RQ", None, "Gb", "PE", 1990, line((50, 113), (150, 113))),
    ("RQ", None, "Gc", "PE", 2015, line((150, 111), (250, 111))),
    ("RQ", None, "Gd", "ZT-HK", 2010, line((300, 300), (500, 300))),
    ("RQ", None, "Ge", "PE", None, line((500, 300), (700, 300))),
    ("RQ", None, "Gf", "PE", 2023, line((1100, 400), (1300, 400))),
    ("JS", None, "J1", "T", 2000, line((100, 450), (300, 450))),
    ("JS", None, "J2", "QM", 1990, line((300, 450), (700, 450))),
    ("JS", None, "J3", "QM", 2000, line((700, 450), (900, 450))),
]
# name, class, line
ROADS = [("朗州路", "ZG", line((0, 20), (1000, 20))),
         ("善卷路", "CG", line((1100, 20), (1100, 620))),
         ("小区路", "XQ", line((100, 800), (500, 800))),
         ("永安街", "ZL", line((1400, 100), (1700, 100)))]
# pole, road class, status, point
LIGHTS = [("L1", "ZG", "normal", point(100, 20)), ("L2", "ZG", "normal", point(140, 20)),
          ("L3", "ZG", "normal", point(500, 20)), ("L4", "ZG", "fault", point(800, 20)),
          ("L5", "CG", "normal", point(1100, 320)), ("L6", "CG", "normal", point(1110, 400)),
          ("L7", "ZL", "normal", point(1400, 100)), ("L8", "ZL", "fault", point(1600, 100)),
          ("L9", "ZL", "removed", point(1650, 100)), ("L10", "XQ", "normal", point(100, 800))]

# Hazard ledger entries (codes of cimplus/hazards/ledger.yaml): status, facility type, source,
# condition cleared (条件已消除), shape (the hazard's geometry; its marker is a point on it).
LEDGER = [("registered", "gas_pipe", "patrol", False, line((295, 111), (315, 111))),    # 1 m from B3
          ("pending", "gas_pipe", "rule", True, line((111, 605), (112, 605))),          # 1 m from B4
          ("awaiting_acceptance", "gas_station", "survey", False, point(1505, 511.5)),  # 1.5 m from B5
          ("rectifying", "gas_pipe", "hotline", False, point(1205, 211)),               # 1 m from B7
          ("closed", "gas_pipe", "patrol", False, line((100, 111), (110, 111))),        # 1 m from B1
          ("registered", "gas_pipe", "patrol", False, point(105, 97)),                  # 3 m from B1
          ("dismissed", "gas_pipe", "rule", False, point(725, 71)),                     # 1 m from B8
          ("registered", "water", "patrol", False, point(205, 99)),                     # 1 m from B2
          ("registered", "gas_pipe", "patrol", False, point(1605, 511))]                # 1 m from B6 (SC)


def seed_ledger(cur, county: str = COUNTY) -> None:
    """Insert the ledger entries of ``LEDGER`` as the ledger holds them (numbered and counted, a closed
    one with its acceptance, an automatic one with its rule and key)."""
    for n, (status, ftype, source, cleared, wkt) in enumerate(LEDGER, 1):
        rule = ("G02", f"G02|test:{county}:{n}") if source == "rule" else (None, None)
        done = status == "closed"
        cur.execute(f"INSERT INTO cim.hazard (number, source, rule_id, rule_key, facility_type, county_code, title, "
                    f"risk_level, found_by, status, condition_cleared, cleared_at, verify_result, closed_by, "
                    f"closed_at, shape, geom) VALUES (%s, %s, %s, %s, %s, %s, %s, 2, 'test', %s, %s, "
                    f"CASE WHEN %s THEN now() END, %s, %s, CASE WHEN %s THEN now() END, {G}, ST_PointOnSurface({G}))",
                    (f"{county}-2025-{n:04d}", source, *rule, ftype, county, f"测试隐患 {n}", status, cleared, cleared,
                     "合格" if done else None, "test" if done else None, done, wkt, wkt))
    cur.execute("INSERT INTO cim.hazard_counter (county_code, year, last) VALUES (%s, 2025, %s)", (county, len(LEDGER)))


def seed(cur, county: str = COUNTY) -> None:
    """Insert the fixture county (all rows current, no delivery)."""
    for code, name, level, parent, wkt in ADMIN:
        cur.execute(f"INSERT INTO cim.admin_area (code, name, level, parent_code, county_code, geom) "
                    f"VALUES (%s, %s, %s, %s, %s, ST_Multi({G}))", (code, name, level, parent, county, wkt))
    for code, use, grade, year, era, floors, height, lift, wkt in BUILDINGS:
        cur.execute(f"INSERT INTO cim.building (code, use_code, appraisal_grade, build_year, build_era, floors_above, "
                    f"height_m, has_lift, county_code, geom) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, ST_Multi({G}))",
                    (code, use, grade, year, era, floors, height, lift, county, wkt))
    for code, cls, sub, wkt in GREEN:
        cur.execute(f"INSERT INTO cim.green_space (code, class_code, subclass_code, county_code, geom) "
                    f"VALUES (%s, %s, %s, %s, ST_Multi({G}))", (code, cls, sub, county, wkt))
    for net, sub, code, material, year, wkt in PIPES:
        cur.execute(f"INSERT INTO cim.pipe_segment (network, subtype, code, start_exp_no, end_exp_no, material, "
                    f"install_year, county_code, geom) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, {G})",
                    (net, sub, code, code + "a", code + "b", material, year, county, wkt))
    for name, cls, wkt in ROADS:
        cur.execute(f"INSERT INTO cim.road (name, road_class, county_code, geom) VALUES (%s, %s, %s, ST_Multi({G}))",
                    (name, cls, county, wkt))
    for pole, cls, status, wkt in LIGHTS:
        cur.execute(f"INSERT INTO cim.streetlight (pole_no, road_class, status, county_code, geom) "
                    f"VALUES (%s, %s, %s, %s, {G})", (pole, cls, status, county, wkt))
    seed_ledger(cur, county)


@pytest.fixture(scope="package")
def hc_url(make_database):
    """A migrated database holding the fixture county."""
    url = make_database("cim_hc")
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            seed(cur)
            cur.execute("ANALYZE")
    finally:
        conn.close()
    return url


@pytest.fixture
def hc_conn(hc_url):
    """A connection to the fixture database (rolled back and closed afterwards)."""
    with testkit.connection(hc_url) as c:
        yield c


@pytest.fixture(scope="package")
def hc_cli(hc_url):
    """Run ``cim …`` against the fixture database; returns the CompletedProcess."""

    def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return testkit.run_cim(hc_url, *args, env=env)

    return run


def write_population(path: Path, rows: list[tuple], header=("行政区划代码", "名称", "常住人口", "年份")) -> Path:
    """A population workbook as a statistics bureau sends it."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "常住人口"
    ws.append(list(header))
    for r in rows:
        ws.append(list(r))
    wb.save(path)
    return path


def write_builtup(path: Path, wkt_local: str, year: int | None = 2025) -> Path:
    """The built-up area as a GeoJSON in EPSG:4546 (a CRS that must be honoured)."""
    import json

    import shapely
    from shapely import wkt as shapely_wkt

    geom = shapely.geometry.mapping(shapely_wkt.loads(wkt_local))
    doc = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4546"}},
           "features": [{"type": "Feature", "properties": {"名称": "测试区建成区", **({"年份": year} if year else {})},
                         "geometry": geom}]}
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="package")
def inputs_loaded(hc_cli, tmp_path_factory):
    """Population (2025) and the built-up area (2025) loaded through the CLI."""
    d = tmp_path_factory.mktemp("hc-inputs")
    pop = write_population(d / "常住人口.xlsx", [(K1, "桃园社区", 1000, 2025), (K2, "金霞社区", 2000, 2025),
                                                 (COUNTY, "测试区", 5000, 2025)])
    res = hc_cli("healthcheck", "inputs", str(pop), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    bu = write_builtup(d / "建成区.geojson", box(0, 0, 1500, 1000))
    res2 = hc_cli("healthcheck", "inputs", str(bu), "--json")
    assert res2.returncode == 0, res2.stdout + res2.stderr
    return {"population": res.stdout, "builtup": res2.stdout}


def _run(hc_cli, *args: str, env: dict | None = None) -> dict:
    res = hc_cli("healthcheck", "run", "--county", COUNTY, "--json", *args, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def _values(hc_cli, run_id: int) -> dict[tuple[str, str], dict]:
    res = hc_cli("healthcheck", "show", str(run_id), "--json")
    assert res.returncode == 0, res.stderr
    return {(v["indicator"], v["area_code"]): v for v in json.loads(res.stdout)["values"]}


@pytest.fixture(scope="package")
def run_2024(hc_cli, inputs_loaded):
    """The run of 2024 (the inputs are of 2025: those needing them are not computed)."""
    return _run(hc_cli, "--year", "2024")


@pytest.fixture(scope="package")
def run_2025(hc_cli, run_2024):
    """The run of 2025, after the 2024 one."""
    return _run(hc_cli, "--year", "2025")


@pytest.fixture(scope="package")
def values_2025(hc_cli, run_2025):
    return _values(hc_cli, run_2025["run_id"])

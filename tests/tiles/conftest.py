"""Tile test data (seeded with SQL) and one live server per module.

The seed is a 2 km × 2 km block near 111.2°E 27.1°N: 40,000 small buildings on a 200 × 200
grid (dense enough that z15 tiles would pass 500 KB without the byte budget), pipes of three
CJJ 61 networks along the grid lines with their points, green spaces, streetlights and one
admin area. One isolated, known building (and a superseded copy of it) sits at KNOWN_LON/LAT.
"""

from __future__ import annotations

import httpx
import psycopg2
import pytest
import testkit

from cim.settings import AuthSettings, DatabaseSettings, Settings, TileSettings

KNOWN_LON, KNOWN_LAT = 111.2500, 27.1500
GRID_W, GRID_S, STEP = 111.2000, 27.1000, 0.0001  # 200 × 0.0001° ≈ 2 km
BBOX = (GRID_W - 0.002, GRID_S - 0.002, KNOWN_LON + 0.002, KNOWN_LAT + 0.002)

SEED_SQL = f"""
INSERT INTO cim.building (code, name, address, floors_above, height_m, use_code, appraisal_grade, self_built,
                          build_year, county_code, geom)
SELECT 'B' || i, '楼' || i, '测试路' || i || '号', 1 + i % 30, 3.0 * (1 + i % 30),
       (ARRAY['ZZ','JY','SC','BG'])[1 + i % 4], (ARRAY['A','B','C','D'])[1 + i % 4], i % 2 = 0, 1990 + i % 30,
       '430521',
       ST_Multi(ST_MakeEnvelope({GRID_W} + (i % 200) * {STEP}, {GRID_S} + (i / 200) * {STEP},
                                {GRID_W} + (i % 200) * {STEP} + 0.00007, {GRID_S} + (i / 200) * {STEP} + 0.00007, 4490))
FROM generate_series(0, 39999) i;

INSERT INTO cim.building (code, name, floors_above, height_m, use_code, county_code, is_current, geom) VALUES
 ('KNOWN-1', '测试大楼', 12, 36.5, 'YL', '430521', true,
  ST_Multi(ST_MakeEnvelope({KNOWN_LON}, {KNOWN_LAT}, {KNOWN_LON} + 0.0002, {KNOWN_LAT} + 0.0002, 4490))),
 ('KNOWN-OLD', '旧版本', 3, 9, 'ZZ', '430521', false,
  ST_Multi(ST_MakeEnvelope({KNOWN_LON}, {KNOWN_LAT}, {KNOWN_LON} + 0.0002, {KNOWN_LAT} + 0.0002, 4490)));

INSERT INTO cim.pipe_point (network, subtype, exp_no, ground_z, depth, county_code, geom)
SELECT (ARRAY['JS','PS','RQ'])[1 + i % 3], CASE WHEN i % 3 = 1 THEN 'YS' END, 'P' || i, 50.0, 1.2, '430521',
       ST_SetSRID(ST_MakePoint({GRID_W} + (i % 100) * {STEP * 2}, {GRID_S} + (i / 100) * {STEP * 2}), 4490)
FROM generate_series(0, 9999) i;

INSERT INTO cim.pipe_segment (network, subtype, start_exp_no, end_exp_no, diameter_mm, material, pressure_class,
                              county_code, length_m, geom)
SELECT (ARRAY['JS','PS','RQ'])[1 + i % 3], CASE WHEN i % 3 = 1 THEN 'YS' END, 'P' || i, 'P' || (i + 1),
       (ARRAY[200, 400, 600])[1 + i % 3], 'PE', CASE WHEN i % 3 = 2 THEN 'ZA' END, '430521', 20.0,
       ST_SetSRID(ST_MakeLine(ST_MakePoint({GRID_W} + (i % 100) * {STEP * 2}, {GRID_S} + (i / 100) * {STEP * 2}),
                              ST_MakePoint({GRID_W} + (i % 100 + 1) * {STEP * 2}, {GRID_S} + (i / 100) * {STEP * 2})),
                  4490)
FROM generate_series(0, 9999) i;

INSERT INTO cim.green_space (code, name, class_code, area_m2, county_code, geom)
SELECT 'G' || i, '绿地' || i, (ARRAY['G1','G2','G3'])[1 + i % 3], 100, '430521',
       ST_Multi(ST_MakeEnvelope({GRID_W} + (i % 100) * {STEP * 2} + 0.00001, {GRID_S} + (i / 100) * {STEP * 2} + 0.00001,
                                {GRID_W} + (i % 100) * {STEP * 2} + 0.00005, {GRID_S} + (i / 100) * {STEP * 2} + 0.00005,
                                4490))
FROM generate_series(0, 4999) i;

INSERT INTO cim.streetlight (pole_no, road_name, status, county_code, geom)
SELECT 'L' || i, '测试路', (ARRAY['normal','fault'])[1 + i % 2], '430521',
       ST_SetSRID(ST_MakePoint({GRID_W} + (i % 100) * {STEP * 2} + 0.00003, {GRID_S} + (i / 100) * {STEP * 2}), 4490)
FROM generate_series(0, 4999) i;

INSERT INTO cim.admin_area (code, name, level, county_code, geom) VALUES
 ('430521', '测试县', 'county', '430521',
  ST_Multi(ST_MakeEnvelope({BBOX[0]}, {BBOX[1]}, {BBOX[2]}, {BBOX[3]}, 4490)));
"""

TABLES = ("building", "pipe_point", "pipe_segment", "green_space", "streetlight", "admin_area")


@pytest.fixture(scope="session")
def tile_data(make_database):
    """A database of its own (same test cluster), migrated and seeded; dropped afterwards.

    Kept apart from the shared test database so counts seen by other suites are untouched.
    """
    url = make_database("cim_tiles")
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(SEED_SQL)
            for t in TABLES:
                cur.execute(f"ANALYZE cim.{t}")
    finally:
        conn.close()
    yield url


def start_server(db_url: str, public_read: bool = True, **tile_opts) -> tuple[str, object]:
    """Run the real app on uvicorn in a thread; returns (base URL, server)."""
    from api.app import create_app

    settings = Settings(db=DatabaseSettings(database_url=db_url), auth=AuthSettings(public_read=public_read),
                        tiles=TileSettings(**tile_opts))
    srv = testkit.serve(create_app(settings))
    return srv.url, srv.server


@pytest.fixture(scope="module")
def server(tile_data):
    """Base URL of a live server (public reads) over the seeded data."""
    base, srv = start_server(tile_data)
    yield base
    srv.should_exit = True


@pytest.fixture
def http(server):
    """httpx client on the live server."""
    with httpx.Client(base_url=server, timeout=60) as client:
        yield client

-- Synthetic county for the health-check benchmark (bench/healthcheck/run.py): county 430599 around
-- 111.40–111.50°E, 27.15–27.25°N, 16 streets (4 × 4) of 16 communities each (256 communities);
-- :n buildings on a jittered grid (60 % dwellings, build years 1950–2024, appraisal grades, floors,
-- heights), parks G1 every ~500 m (four sizes: 1,000 m² (too small to serve), 3,000, 8,000 and
-- 20,000 m²), drainage (YS, WS, HS) and gas pipes along a 100 m grid with materials and install
-- years, roads every 200 m with classes, streetlights every ~30 m along them.
-- psql variable: n (buildings).
\set x0 111.40
\set y0 27.15
\set w 0.10
INSERT INTO cim.admin_area (code, parent_code, name, level, county_code, geom)
SELECT '430599', '430500', '基准测试县', 'county', '430599',
       ST_Multi(ST_MakeEnvelope(:x0, :y0, :x0 + :w, :y0 + :w, 4490));
INSERT INTO cim.admin_area (code, parent_code, name, level, county_code, geom)
SELECT '430599' || lpad((1 + s)::text, 3, '0'), '430599', '街道' || (1 + s), 'street', '430599',
       ST_Multi(ST_MakeEnvelope(:x0 + (s % 4) * :w / 4, :y0 + (s / 4) * :w / 4,
                                :x0 + (s % 4 + 1) * :w / 4, :y0 + (s / 4 + 1) * :w / 4, 4490))
  FROM generate_series(0, 15) s;
INSERT INTO cim.admin_area (code, parent_code, name, level, county_code, geom)
SELECT '430599' || lpad((1 + s)::text, 3, '0') || lpad((1 + c)::text, 3, '0'),
       '430599' || lpad((1 + s)::text, 3, '0'), '社区' || (1 + s) || '-' || (1 + c), 'community', '430599',
       ST_Multi(ST_MakeEnvelope(:x0 + (s % 4) * :w / 4 + (c % 4) * :w / 16, :y0 + (s / 4) * :w / 4 + (c / 4) * :w / 16,
                                :x0 + (s % 4) * :w / 4 + (c % 4 + 1) * :w / 16,
                                :y0 + (s / 4) * :w / 4 + (c / 4 + 1) * :w / 16, 4490))
  FROM generate_series(0, 15) s, generate_series(0, 15) c;

INSERT INTO cim.building (code, floors_above, height_m, build_year, use_code, appraisal_grade, has_lift, county_code, geom)
SELECT 'B' || i, 1 + i % 33, CASE WHEN i % 3 = 1 THEN 3 + (i % 40) * 2.5 END, 1950 + i % 75,
       CASE WHEN i % 5 < 3 THEN 'ZZ' ELSE (ARRAY['JY', 'YL', 'BG', 'SC'])[1 + i % 4] END,
       (ARRAY['A', 'B', 'C', 'D', NULL])[1 + i % 5], CASE WHEN i % 7 = 0 THEN true END, '430599',
       ST_Multi(ST_MakeEnvelope(x, y, x + step * 0.55, y + step * 0.6, 4490))
FROM (SELECT i, step, :x0 + (i % side) * step + random() * step * 0.3 AS x,
             :y0 + (i / side) * step + random() * step * 0.3 AS y
        FROM generate_series(0, :n - 1) AS i,
             (SELECT ceil(sqrt(:n))::int AS side, :w / ceil(sqrt(:n)) AS step) s) g;

-- parks: one per 0.005° cell, side in degrees from its area (1° ≈ 111,320 m; x scaled by cos 27.2°)
INSERT INTO cim.green_space (code, name, class_code, subclass_code, area_m2, county_code, geom)
SELECT 'P' || i || '-' || j, '公园' || i || '-' || j, 'G1', (ARRAY['G11', 'G12', 'G13', 'G14'])[1 + (i + j) % 4], a, '430599',
       ST_Multi(ST_MakeEnvelope(x, y, x + sqrt(a) / (111320 * cos(radians(27.2))), y + sqrt(a) / 111320, 4490))
FROM (SELECT i, j, (ARRAY[1000, 3000, 8000, 20000])[1 + (i * 7 + j) % 4]::float8 AS a,
             :x0 + i * 0.005 + 0.001 AS x, :y0 + j * 0.005 + 0.001 AS y
        FROM generate_series(0, 19) i, generate_series(0, 19) j) p;

-- pipes along a 0.001° grid, each 0.001° long; drainage subtypes, materials and years cycle
INSERT INTO cim.pipe_segment (network, subtype, code, start_exp_no, end_exp_no, material, install_year, diameter_mm,
                              county_code, geom)
SELECT net, CASE WHEN net = 'PS' THEN (ARRAY['YS', 'WS', 'HS'])[1 + (i + j) % 3] END,
       net || '-' || d || '-' || i || '-' || j, net || d || i || '-' || j || 'a', net || d || i || '-' || j || 'b',
       CASE WHEN net = 'PS' THEN (ARRAY['T-PK', 'T-GJ', 'PVC', 'T-GJ'])[1 + (i * 3 + j) % 4]
            ELSE (ARRAY['G', 'PE', 'ZT-HK', 'PE'])[1 + (i * 3 + j) % 4] END,
       CASE WHEN (i + j) % 11 = 0 THEN NULL ELSE 1955 + (i * 13 + j * 7) % 70 END, 300, '430599',
       CASE WHEN d = 'h' THEN ST_MakeLine(ST_MakePoint(:x0 + i * 0.001, :y0 + j * 0.001 + o),
                                          ST_MakePoint(:x0 + (i + 1) * 0.001, :y0 + j * 0.001 + o))
            ELSE ST_MakeLine(ST_MakePoint(:x0 + i * 0.001 + o, :y0 + j * 0.001),
                             ST_MakePoint(:x0 + i * 0.001 + o, :y0 + (j + 1) * 0.001)) END
FROM generate_series(0, 99) i, generate_series(0, 99) j, unnest(ARRAY['h', 'v']) d,
     (VALUES ('PS', 0.00003), ('RQ', -0.00003)) n(net, o);
UPDATE cim.pipe_segment SET geom = ST_SetSRID(geom, 4490) WHERE ST_SRID(geom) = 0;

-- roads every 0.002° (classes cycle), lights every 0.0003° along them
INSERT INTO cim.road (code, name, road_class, width_m, lanes, county_code, geom)
SELECT 'R' || d || k, (CASE WHEN d = 'h' THEN '东西' ELSE '南北' END) || k || '路',
       (ARRAY['ZG', 'CG', 'ZL', 'CG'])[1 + k % 4], 20, 4, '430599',
       ST_Multi(CASE WHEN d = 'h' THEN ST_MakeLine(ST_MakePoint(:x0, :y0 + k * 0.002 + 0.0005), ST_MakePoint(:x0 + :w, :y0 + k * 0.002 + 0.0005))
                     ELSE ST_MakeLine(ST_MakePoint(:x0 + k * 0.002 + 0.0005, :y0), ST_MakePoint(:x0 + k * 0.002 + 0.0005, :y0 + :w)) END)
FROM generate_series(0, 49) k, unnest(ARRAY['h', 'v']) d;
UPDATE cim.road SET geom = ST_SetSRID(geom, 4490) WHERE ST_SRID(geom) = 0;
INSERT INTO cim.streetlight (pole_no, road_name, road_class, status, county_code, geom)
SELECT 'L' || r.code || '-' || t, r.name, r.road_class, CASE WHEN t % 37 = 0 THEN 'fault' ELSE 'normal' END, '430599',
       ST_LineInterpolatePoint(ST_GeometryN(r.geom, 1), t / 333.0)
FROM cim.road r, generate_series(0, 333) t WHERE r.county_code = '430599';

ANALYZE cim.admin_area;
ANALYZE cim.building;
ANALYZE cim.green_space;
ANALYZE cim.pipe_segment;
ANALYZE cim.road;
ANALYZE cim.streetlight;

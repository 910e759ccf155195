-- Known geometry for the API tests: a small test county 990001 near lon 100.50, lat 25.00
-- (far from any demo data). All rows are removed again by tests/api/conftest.py.
--
-- Layout (lon/lat, CGCS2000):
--   admin area 990001 (county) = square 100.49..100.52 x 24.99..25.02; street 990001001 = west half
--   pipes run east-west between lon 100.500 and 100.502:
--     JS 给水  at lat 25.0000, DN300 PE, z_ref top,    start_z 98.8 end_z 99.6, depth 1.2 → 1.4
--     PS 排水  at lat 25.0010, 1000x800 混凝土 T, invert, start_z 98.0 end_z 97.8, depth 2.5 → 3.7
--     RQ 燃气  at lat 25.0020, DN160 PE, z_ref centre, start_z 99.0 end_z 99.4, depth 1.0 → 1.6
--   an old (is_current = false) JS segment at lat 25.0005 that must never appear
--   buildings TB-001..TB-005 (20 m squares) along lat 25.0050; TB-OLD not current
--   streetlights LD-001..LD-012 every 0.0002° of lon along lat 25.0030
--   green spaces: G1 park 100.505..100.507 x 25.005..25.007, G2 strip, both in the west half

INSERT INTO cim.admin_area (code, parent_code, name, level, area_m2, county_code, geom) VALUES
 ('990001', '990000', '测试县', 'county', NULL, '990001',
  ST_Multi(ST_MakeEnvelope(100.49, 24.99, 100.52, 25.02, 4490))),
 ('990001001', '990001', '测试街道', 'street', NULL, '990001',
  ST_Multi(ST_MakeEnvelope(100.49, 24.99, 100.51, 25.02, 4490)));

INSERT INTO cim.pipe_point (network, subtype, exp_no, feature, ground_z, depth, road, county_code, geom) VALUES
 ('JS', NULL, 'TJS1', '直线点', 100.0, 1.2, '测试路', '990001', ST_SetSRID(ST_MakePoint(100.500, 25.000), 4490)),
 ('JS', NULL, 'TJS2', '直线点', 101.0, 1.4, '测试路', '990001', ST_SetSRID(ST_MakePoint(100.502, 25.000), 4490)),
 ('PS', 'YS', 'TYS1', NULL, 100.5, 2.5, '测试路', '990001', ST_SetSRID(ST_MakePoint(100.500, 25.001), 4490)),
 ('PS', 'YS', 'TYS2', NULL, 101.5, 3.7, '测试路', '990001', ST_SetSRID(ST_MakePoint(100.502, 25.001), 4490)),
 ('RQ', NULL, 'TRQ1', '直线点', 100.0, 1.0, '测试路', '990001', ST_SetSRID(ST_MakePoint(100.500, 25.002), 4490)),
 ('RQ', NULL, 'TRQ2', '直线点', 101.0, 1.6, '测试路', '990001', ST_SetSRID(ST_MakePoint(100.502, 25.002), 4490));
UPDATE cim.pipe_point SET node_type = 'manhole', appurtenance = '检查井', well_depth = depth
 WHERE county_code = '990001' AND network = 'PS';

INSERT INTO cim.pipe_segment (network, subtype, code, start_exp_no, end_exp_no, start_point_id, end_point_id,
                              start_depth, end_depth, start_z, end_z, z_ref, diameter_mm, width_mm, height_mm,
                              material, road, length_m, county_code, geom)
SELECT 'JS', NULL, 'TSEG-JS', 'TJS1', 'TJS2', a.id, b.id, 1.2, 1.4, 98.8, 99.6, 'top', 300, NULL, NULL, 'PE',
       '测试路', 201.7, '990001', ST_MakeLine(a.geom, b.geom)
  FROM cim.pipe_point a, cim.pipe_point b WHERE a.exp_no = 'TJS1' AND b.exp_no = 'TJS2';
INSERT INTO cim.pipe_segment (network, subtype, code, start_exp_no, end_exp_no, start_point_id, end_point_id,
                              start_depth, end_depth, start_z, end_z, z_ref, diameter_mm, width_mm, height_mm,
                              material, road, length_m, county_code, geom)
SELECT 'PS', 'YS', 'TSEG-YS', 'TYS1', 'TYS2', a.id, b.id, 2.5, 3.7, 98.0, 97.8, 'invert', NULL, 1000, 800, 'T',
       '测试路', 201.7, '990001', ST_MakeLine(a.geom, b.geom)
  FROM cim.pipe_point a, cim.pipe_point b WHERE a.exp_no = 'TYS1' AND b.exp_no = 'TYS2';
INSERT INTO cim.pipe_segment (network, subtype, code, start_exp_no, end_exp_no, start_point_id, end_point_id,
                              start_depth, end_depth, start_z, end_z, z_ref, diameter_mm, width_mm, height_mm,
                              material, road, length_m, county_code, geom)
SELECT 'RQ', NULL, 'TSEG-RQ', 'TRQ1', 'TRQ2', a.id, b.id, 1.0, 1.6, 99.0, 99.4, 'centre', 160, NULL, NULL, 'PE',
       '测试路', 201.7, '990001', ST_MakeLine(a.geom, b.geom)
  FROM cim.pipe_point a, cim.pipe_point b WHERE a.exp_no = 'TRQ1' AND b.exp_no = 'TRQ2';
INSERT INTO cim.pipe_segment (network, code, start_exp_no, end_exp_no, start_depth, end_depth, start_z, end_z,
                              z_ref, diameter_mm, material, county_code, is_current, geom) VALUES
 ('JS', 'TSEG-OLD', 'X1', 'X2', 1, 1, 99, 99, 'top', 200, 'ZT', '990001', false,
  ST_SetSRID(ST_MakeLine(ST_MakePoint(100.500, 25.0005), ST_MakePoint(100.502, 25.0005)), 4490));

-- buildings: 20 m squares (0.0002° lon x 0.00018° lat) starting at lon 100.500 + 0.001 * i
INSERT INTO cim.building (code, name, address, floors_above, height_m, building_area_m2, use_code, build_year,
                          self_built, county_code, is_current, geom)
SELECT 'TB-00' || i, '测试大楼' || i, '测试县幸福路' || i || '号', i * 2, i * 6.0, 1000.0 * i,
       CASE WHEN i <= 3 THEN 'ZZ' ELSE 'JY' END, 1990 + i, i = 5, '990001', true,
       ST_Multi(ST_MakeEnvelope(100.500 + 0.001 * i, 25.005, 100.5002 + 0.001 * i, 25.00518, 4490))
  FROM generate_series(1, 5) AS i;
INSERT INTO cim.building (code, name, county_code, is_current, use_code, geom) VALUES
 ('TB-OLD', '旧楼', '990001', false, 'ZZ', ST_Multi(ST_MakeEnvelope(100.5010, 25.005, 100.5012, 25.00518, 4490)));

INSERT INTO cim.streetlight (pole_no, road_name, pole_height_m, wattage_w, lamp_count, status, county_code, geom)
SELECT 'LD-' || lpad(i::text, 3, '0'), '测试路', 10, 100 + i, 1, 'normal', '990001',
       ST_SetSRID(ST_MakePoint(100.500 + 0.0002 * i, 25.003), 4490)
  FROM generate_series(1, 12) AS i;

INSERT INTO cim.green_space (code, name, class_code, subclass_code, county_code, geom) VALUES
 ('TG-1', '测试公园', 'G1', 'G11', '990001', ST_Multi(ST_MakeEnvelope(100.505, 25.010, 100.507, 25.012, 4490))),
 ('TG-2', '测试防护绿地', 'G2', NULL, '990001', ST_Multi(ST_MakeEnvelope(100.495, 25.010, 100.496, 25.011, 4490)));

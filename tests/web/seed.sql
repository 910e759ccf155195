-- Known features for the browser tests: web-test county 990002 around lon 111.500, lat 27.200
-- (3° Gauss-Krüger zone CM 111°E), in a database of its own (tests/web/conftest.py).
--
-- Layout (lon/lat, CGCS2000), all within 300 m of the centre so zoom 17 shows everything:
--   admin area 990002 (county) 111.48..111.52 x 27.18..27.22; street 990002001 = west half
--   人民路 pipes run east-west from lon 111.4970 to 111.5030:
--     JS 给水 at lat 27.19990, DN300 球墨铸铁 QM, depth 1.2 / 1.3
--     PS 排水 (YS 雨水) at lat 27.20000, DN800 混凝土 T, depth 2.5 / 2.7
--     RQ 燃气 at lat 27.20010, DN160 PE, depth 1.0 / 1.1
--     DL 电力 at lat 27.19980, 600x400 duct block, depth 0.8
--   buildings WB-001..WB-004, 40 m squares along lat 27.2010 (WB-001 = 县人民医院门诊楼)
--   green space WG-001 south of the road; streetlights WL-001..WL-005 along lat 27.20050
--   county 990003 (111.52..111.56) east of it is empty: the upload tests deliver into it

INSERT INTO cim.admin_area (code, parent_code, name, level, county_code, geom) VALUES
 ('990002', '990000', '网页测试县', 'county', '990002', ST_Multi(ST_MakeEnvelope(111.48, 27.18, 111.52, 27.22, 4490))),
 ('990002001', '990002', '城关街道', 'street', '990002', ST_Multi(ST_MakeEnvelope(111.48, 27.18, 111.50, 27.22, 4490))),
 ('990003', '990000', '上传测试县', 'county', '990003', ST_Multi(ST_MakeEnvelope(111.52, 27.18, 111.56, 27.22, 4490)));

INSERT INTO cim.pipe_point (network, subtype, exp_no, feature, ground_z, depth, road, county_code, geom) VALUES
 ('JS', 'JP', 'JS0001', '直线点', 100.0, 1.2, '人民路', '990002', ST_SetSRID(ST_MakePoint(111.4970, 27.19990), 4490)),
 ('JS', 'JP', 'JS0002', '直线点', 100.4, 1.3, '人民路', '990002', ST_SetSRID(ST_MakePoint(111.5030, 27.19990), 4490)),
 ('PS', 'YS', 'YS0001', NULL, 100.0, 2.5, '人民路', '990002', ST_SetSRID(ST_MakePoint(111.4970, 27.20000), 4490)),
 ('PS', 'YS', 'YS0002', NULL, 100.4, 2.7, '人民路', '990002', ST_SetSRID(ST_MakePoint(111.5030, 27.20000), 4490)),
 ('RQ', 'TR', 'RQ0001', '直线点', 100.0, 1.0, '人民路', '990002', ST_SetSRID(ST_MakePoint(111.4970, 27.20010), 4490)),
 ('RQ', 'TR', 'RQ0002', '直线点', 100.4, 1.1, '人民路', '990002', ST_SetSRID(ST_MakePoint(111.5030, 27.20010), 4490));
UPDATE cim.pipe_point SET node_type = 'manhole', appurtenance = '检查井', feature = NULL, well_depth = depth + 0.3
 WHERE county_code = '990002' AND network = 'PS';

INSERT INTO cim.pipe_segment (network, subtype, code, start_exp_no, end_exp_no, start_depth, end_depth,
                              start_z, end_z, z_ref, diameter_mm, width_mm, height_mm, section_shape, material,
                              status, road, length_m, county_code, geom) VALUES
 ('JS', 'JP', 'JSL-0001', 'JS0001', 'JS0002', 1.2, 1.3, 98.8, 99.1, 'top', 300, NULL, NULL, 'circle', 'QM',
  '0', '人民路', 593.6, '990002', ST_SetSRID(ST_MakeLine(ST_MakePoint(111.4970, 27.19990), ST_MakePoint(111.5030, 27.19990)), 4490)),
 ('PS', 'YS', 'YSL-0001', 'YS0001', 'YS0002', 2.5, 2.7, 97.5, 97.7, 'invert', 800, NULL, NULL, 'circle', 'T',
  '0', '人民路', 593.6, '990002', ST_SetSRID(ST_MakeLine(ST_MakePoint(111.4970, 27.20000), ST_MakePoint(111.5030, 27.20000)), 4490)),
 ('RQ', 'TR', 'RQL-0001', 'RQ0001', 'RQ0002', 1.0, 1.1, 99.0, 99.3, 'centre', 160, NULL, NULL, 'circle', 'PE',
  '0', '人民路', 593.6, '990002', ST_SetSRID(ST_MakeLine(ST_MakePoint(111.4970, 27.20010), ST_MakePoint(111.5030, 27.20010)), 4490)),
 ('DL', 'GD', 'DLL-0001', 'DL0001', 'DL0002', 0.8, 0.8, 99.2, 99.6, 'top', NULL, 600, 400, 'rect', 'T',
  '0', '人民路', 593.6, '990002', ST_SetSRID(ST_MakeLine(ST_MakePoint(111.4970, 27.19980), ST_MakePoint(111.5030, 27.19980)), 4490));
UPDATE cim.pipe_segment SET pressure_class = 'ZA' WHERE county_code = '990002' AND network = 'RQ';

INSERT INTO cim.building (code, name, address, floors_above, floors_below, height_m, building_area_m2, structure_type,
                          build_year, use_code, appraisal_grade, self_built, ground_z, county_code, geom) VALUES
 ('WB-001', '县人民医院门诊楼', '人民路 1 号', 6, 1, 24.0, 9600, NULL, 2008, 'YL', 'A', false, 100.0, '990002',
  ST_Multi(ST_MakeEnvelope(111.4978, 27.2008, 111.4982, 27.20116, 4490))),
 ('WB-002', '幸福小区1栋', '人民路 12 号', 11, 1, 33.0, 15400, NULL, 2015, 'ZZ', 'A', false, 100.1, '990002',
  ST_Multi(ST_MakeEnvelope(111.4992, 27.2008, 111.4996, 27.20116, 4490))),
 ('WB-003', '实验小学教学楼', '人民路 20 号', 4, 0, 15.0, 4800, NULL, 1998, 'JY', 'B', false, 100.2, '990002',
  ST_Multi(ST_MakeEnvelope(111.5004, 27.2008, 111.5008, 27.20116, 4490))),
 ('WB-004', '农贸市场', '人民路 31 号', 2, 0, 8.0, 3000, NULL, 1990, 'SC', 'C', true, 100.3, '990002',
  ST_Multi(ST_MakeEnvelope(111.5018, 27.2008, 111.5022, 27.20116, 4490)));

INSERT INTO cim.green_space (code, name, class_code, subclass_code, area_m2, county_code, geom) VALUES
 ('WG-001', '人民公园', 'G1', 'G11', 22000, '990002', ST_Multi(ST_MakeEnvelope(111.4985, 27.1984, 111.5010, 27.1992, 4490)));

INSERT INTO cim.streetlight (pole_no, road_name, pole_type, pole_height_m, lamp_count, wattage_w, status, county_code, geom)
SELECT 'WL-00' || i, '人民路', NULL, 10, 2, 150, NULL, '990002', ST_SetSRID(ST_MakePoint(111.4975 + i * 0.001, 27.20050), 4490)
  FROM generate_series(1, 5) AS i;

-- 3D Tiles test data around 111.46E 27.23N: 260 buildings (heights, floors only, nothing; holes;
-- multipolygons; use codes with storey heights), pipes of several networks with depths,
-- elevations and every z_ref, round and W×H sections, wells and valves.
INSERT INTO cim.building (code, name, floors_above, height_m, use_code, self_built, build_year, ground_z,
                          county_code, geom)
SELECT 'B' || i, '楼' || i,
       CASE WHEN i % 3 = 0 THEN NULL ELSE 1 + i % 18 END,
       CASE WHEN i % 3 = 1 THEN 4 + (i % 25) * 2.5 ELSE NULL END,
       (ARRAY['ZZ', 'JY', 'YL', 'BG', 'SC', 'ZZ-DL', NULL])[1 + i % 7],
       i % 2 = 0, 1980 + i % 40,
       CASE WHEN i % 5 = 0 THEN 52.5 ELSE NULL END,
       '430521',
       ST_Multi(CASE WHEN i % 10 = 0 THEN
           ST_Difference(ST_MakeEnvelope(x, y, x + 0.0003, y + 0.0003, 4490),
                         ST_MakeEnvelope(x + 0.0001, y + 0.0001, x + 0.0002, y + 0.0002, 4490))
         WHEN i % 10 = 1 THEN  -- L shape
           ST_GeomFromText(format('POLYGON((%s %s,%s %s,%s %s,%s %s,%s %s,%s %s,%s %s))',
             x, y, x + 0.0003, y, x + 0.0003, y + 0.0001, x + 0.0001, y + 0.0001, x + 0.0001, y + 0.0003,
             x, y + 0.0003, x, y), 4490)
         ELSE ST_MakeEnvelope(x, y, x + 0.00015 + (i % 4) * 0.00003, y + 0.0002, 4490) END)
FROM (SELECT i, 111.455 + (i % 20) * 0.0005 AS x, 27.225 + (i / 20) * 0.0005 AS y
      FROM generate_series(0, 259) AS i) g;
-- a two-part building
INSERT INTO cim.building (code, name, floors_above, use_code, county_code, geom)
VALUES ('B-MULTI', '双塔', 12, 'BG', '430521', ST_GeomFromText(
  'MULTIPOLYGON(((111.4505 27.2255,111.4507 27.2255,111.4507 27.2257,111.4505 27.2257,111.4505 27.2255)),'
  '((111.4509 27.2255,111.4511 27.2255,111.4511 27.2257,111.4509 27.2257,111.4509 27.2255)))', 4490));
-- a superseded building must not appear
INSERT INTO cim.building (code, county_code, is_current, geom)
VALUES ('B-OLD', '430521', false, ST_Multi(ST_MakeEnvelope(111.44, 27.22, 111.4402, 27.2202, 4490)));

-- pipe points: a row of manholes (wells) with ground, depths, invert; valves; plain feature points
INSERT INTO cim.pipe_point (network, subtype, exp_no, feature, appurtenance, ground_z, well_depth, depth, invert_z,
                            well_cover, node_type, county_code, geom)
SELECT (ARRAY['PS', 'JS', 'RQ', 'DL', 'TX'])[1 + (i / 20)],
       (ARRAY['YS', NULL, 'TR', NULL, NULL])[1 + (i / 20)],
       'P' || i,
       CASE WHEN i % 4 = 3 THEN '弯头' END,
       CASE WHEN i % 4 = 0 THEN '检查井' WHEN i % 4 = 1 THEN '阀门' END,
       50 + (i % 7) * 0.3,
       CASE WHEN i % 4 = 0 THEN 2.0 + (i % 3) * 0.5 END,
       CASE WHEN i % 4 = 1 THEN 1.2 END,
       CASE WHEN i % 8 = 0 THEN 47.0 END,
       CASE WHEN i % 4 = 0 THEN 'Φ700' END,
       CASE WHEN i % 4 = 0 AND i / 20 = 0 THEN 'manhole' END,
       '430521',
       ST_SetSRID(ST_MakePoint(111.455 + (i % 20) * 0.0005, 27.2245 - (i / 20) * 0.0004), 4490)
FROM generate_series(0, 99) AS i;

-- segments between consecutive points of a row; depth / elevation / z_ref / section vary
INSERT INTO cim.pipe_segment (network, subtype, start_exp_no, end_exp_no, start_point_id, end_point_id,
                              start_depth, end_depth, start_z, end_z, z_ref, diameter_mm, width_mm, height_mm,
                              section_shape, material, county_code, geom)
SELECT a.network, a.subtype, a.exp_no, b.exp_no, a.id, b.id,
       CASE WHEN k % 3 = 0 THEN 1.5 END, CASE WHEN k % 3 = 0 THEN 1.8 END,
       CASE WHEN k % 3 = 1 THEN a.ground_z - 2.2 END, CASE WHEN k % 3 = 1 THEN b.ground_z - 2.4 END,
       (ARRAY['top', 'invert', 'centre'])[1 + k % 3],
       CASE WHEN a.network = 'TX' THEN NULL ELSE 300 + (k % 5) * 100 END,
       CASE WHEN a.network = 'TX' THEN 600 END, CASE WHEN a.network = 'TX' THEN 400 END,
       CASE WHEN a.network = 'TX' THEN 'rect' ELSE 'circle' END,
       'PE', '430521',
       CASE WHEN k % 6 = 5 THEN  -- a bent segment with a middle vertex
         ST_MakeLine(ARRAY[a.geom, ST_SetSRID(ST_MakePoint(ST_X(a.geom) + 0.00025, ST_Y(a.geom) + 0.0001), 4490), b.geom])
       ELSE ST_MakeLine(a.geom, b.geom) END
FROM (SELECT p.*, row_number() OVER (ORDER BY id) AS k FROM cim.pipe_point p) a
JOIN cim.pipe_point b ON b.exp_no = 'P' || (substr(a.exp_no, 2)::int + 1)
WHERE substr(a.exp_no, 2)::int % 20 <> 19;

-- Synthetic province for the batch benchmark and tests: N counties (430521, 430522, …) side by
-- side, 0.3° apart, each with n buildings on a jittered grid (rectangles, L shapes, courtyards;
-- heights from height_m, floors or neither) and a pipe network of p points with segments between
-- neighbours. Deterministic (the jitter is a function of the row number). Bound parameters (psycopg2).
INSERT INTO cim.building (code, floors_above, height_m, use_code, county_code, geom)
SELECT 'B' || c || '-' || i,
       CASE WHEN i %% 3 = 0 THEN NULL ELSE 1 + i %% 30 END,
       CASE WHEN i %% 3 = 1 THEN 3 + (i %% 40) * 2.0 ELSE NULL END,
       (ARRAY['ZZ', 'JY', 'YL', 'BG', 'SC', 'PF', NULL])[1 + i %% 7], (430521 + c)::text,
       ST_Multi(CASE WHEN i %% 10 = 0 THEN
           ST_Difference(ST_MakeEnvelope(x, y, x + 0.0003, y + 0.0003, 4490),
                         ST_MakeEnvelope(x + 0.0001, y + 0.0001, x + 0.0002, y + 0.0002, 4490))
         WHEN i %% 10 = 1 THEN
           ST_GeomFromText(format('POLYGON((%%s %%s,%%s %%s,%%s %%s,%%s %%s,%%s %%s,%%s %%s,%%s %%s))',
             x, y, x + 0.0003, y, x + 0.0003, y + 0.0001, x + 0.0001, y + 0.0001, x + 0.0001, y + 0.0003,
             x, y + 0.0003, x, y), 4490)
         ELSE ST_MakeEnvelope(x, y, x + 0.00012 + (i %% 5) * 0.00004, y + 0.00015 + (i %% 3) * 0.00005, 4490) END)
FROM (SELECT c, i, 111.40 + (c %% 2) * 0.3 + (i %% side) * 0.0005 + ((i::bigint * 7919) %% 100) * 0.000001 AS x,
             27.15 + (c / 2) * 0.3 + (i / side) * 0.0005 + ((i::bigint * 104729) %% 100) * 0.000001 AS y
      FROM generate_series(0, %(counties)s - 1) AS c, generate_series(0, %(n)s - 1) AS i,
           (SELECT ceil(sqrt(%(n)s))::int AS side) s) g;

INSERT INTO cim.pipe_point (network, exp_no, appurtenance, ground_z, well_depth, depth, county_code, geom)
SELECT (ARRAY['JS', 'PS', 'RQ', 'DL', 'TX'])[1 + i %% 5], 'P' || c || '-' || i,
       CASE WHEN i %% 4 = 0 THEN '检查井' WHEN i %% 4 = 1 THEN '阀门' END,
       50 + (i %% 7) * 0.3, CASE WHEN i %% 4 = 0 THEN 2.5 END, CASE WHEN i %% 4 = 1 THEN 1.2 END, (430521 + c)::text,
       ST_SetSRID(ST_MakePoint(111.40 + (c %% 2) * 0.3 + (i %% side) * 0.0004,
                               27.15 + (c / 2) * 0.3 + (i / side) * 0.0004), 4490)
FROM generate_series(0, %(counties)s - 1) AS c, generate_series(0, %(p)s - 1) AS i,
     (SELECT ceil(sqrt(%(p)s))::int AS side) s;

INSERT INTO cim.pipe_segment (network, start_exp_no, end_exp_no, start_point_id, end_point_id, start_depth, end_depth,
                              z_ref, diameter_mm, width_mm, height_mm, section_shape, county_code, geom)
SELECT a.network, a.exp_no, b.exp_no, a.id, b.id, 1.2 + (a.id %% 5) * 0.2, 1.3 + (a.id %% 5) * 0.2,
       (ARRAY['top', 'invert', 'centre'])[1 + a.id %% 3],
       CASE WHEN a.network = 'TX' THEN NULL ELSE 200 + (a.id %% 6) * 100 END,
       CASE WHEN a.network = 'TX' THEN 800 END, CASE WHEN a.network = 'TX' THEN 500 END,
       CASE WHEN a.network = 'TX' THEN 'rect' ELSE 'circle' END, a.county_code, ST_MakeLine(a.geom, b.geom)
FROM cim.pipe_point a JOIN cim.pipe_point b ON b.id = a.id + 1 AND b.county_code = a.county_code
WHERE a.exp_no LIKE 'P%%';
ANALYZE cim.building;
ANALYZE cim.pipe_point;
ANALYZE cim.pipe_segment;

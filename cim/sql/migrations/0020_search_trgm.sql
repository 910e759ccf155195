-- 0020 search: trigram indexes for GET /api/search (case-insensitive "contains").
--
-- One GIN trigram index per large feature table over the searchable text columns of that
-- table joined with U+001F (a character no search text contains): a layer's search first
-- narrows with `<this expression> ILIKE '%q%'` (an index scan), then tests each column.
-- The expressions must stay identical to layers/query.py TRGM_COLUMNS (column order included);
-- a table whose layers gain a searchable column simply searches without the index until a
-- new migration rebuilds it. Without pg_trgm (a server lacking contrib) search still works,
-- by scanning.

DO $$
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'pg_trgm is not available (%); /api/search will scan', SQLERRM;
        RETURN;
    END;
    CREATE INDEX building_search_trgm_idx ON cim.building USING gin (
        (coalesce(address, '') || E'\x1f' || coalesce(code, '') || E'\x1f' || coalesce(name, '')) gin_trgm_ops)
        WHERE is_current;
    CREATE INDEX pipe_point_search_trgm_idx ON cim.pipe_point USING gin (
        (coalesce(exp_no, '') || E'\x1f' || coalesce(facility_uid, '') || E'\x1f' || coalesce(pump_name, '')
         || E'\x1f' || coalesce(road, '')) gin_trgm_ops)
        WHERE is_current;
    CREATE INDEX pipe_segment_search_trgm_idx ON cim.pipe_segment USING gin (
        (coalesce(code, '') || E'\x1f' || coalesce(end_exp_no, '') || E'\x1f' || coalesce(road, '')
         || E'\x1f' || coalesce(start_exp_no, '')) gin_trgm_ops)
        WHERE is_current;
    CREATE INDEX streetlight_search_trgm_idx ON cim.streetlight USING gin (
        (coalesce(pole_no, '') || E'\x1f' || coalesce(road_name, '')) gin_trgm_ops)
        WHERE is_current;
END $$;

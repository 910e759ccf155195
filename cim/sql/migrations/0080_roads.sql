-- 0080 road centre lines (道路中心线), and the lift attribute of buildings.
--
-- cim.road holds the road centre lines of a county (name, class per CJJ 37 in
-- cim.dict_road_class: KS 快速路, ZG 主干路, CG 次干路, ZL 支路, XQ 小区道路; width, lanes). The
-- health check reads it for 路灯覆盖率 and 道路网密度; the one-map shows it as layer `roads`.
-- Centre lines arrive as polylines with one or several parts, so the column is MultiLineString.
-- Like every feature table (0003, 0050): lineage columns, is_current, a GiST index, the
-- data-version triggers and the statement-level delivery reference checks.

CREATE TABLE cim.road (
    id            bigserial PRIMARY KEY,
    code          text,                -- 道路编码
    name          text,                -- 道路名称
    road_class    text,                -- dict_road_class
    width_m       double precision CHECK (width_m IS NULL OR width_m >= 0),   -- 道路宽度 (红线宽度, m)
    lanes         smallint CHECK (lanes IS NULL OR lanes >= 0),              -- 车道数
    county_code   varchar(12) NOT NULL,
    delivery_id   bigint,
    source_layer  text,
    source_row    integer,
    is_current    boolean NOT NULL DEFAULT true,
    geom          geometry(MultiLineString, 4490) NOT NULL
);
CREATE INDEX road_geom_idx ON cim.road USING gist (geom);
CREATE INDEX road_delivery_idx ON cim.road (delivery_id);

INSERT INTO cim.data_version (source_table) VALUES ('road') ON CONFLICT DO NOTHING;
CREATE TRIGGER road_version AFTER INSERT OR UPDATE OR DELETE ON cim.road
    FOR EACH STATEMENT EXECUTE FUNCTION cim.bump_data_version();
CREATE TRIGGER road_version_truncate AFTER TRUNCATE ON cim.road
    FOR EACH STATEMENT EXECUTE FUNCTION cim.bump_data_version();

CREATE TRIGGER road_delivery_ref AFTER INSERT ON cim.road REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cim.check_delivery_refs();
CREATE TRIGGER road_delivery_ref_update AFTER UPDATE OF delivery_id ON cim.road FOR EACH ROW
    WHEN (NEW.delivery_id IS DISTINCT FROM OLD.delivery_id) EXECUTE FUNCTION cim.check_delivery_ref_row();

-- A delivery still referenced by a road cannot be deleted (the list of 0050 plus road).
CREATE OR REPLACE FUNCTION cim.check_delivery_unreferenced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE t text; used bigint;
BEGIN
    FOREACH t IN ARRAY ARRAY['admin_area', 'building', 'pipe_point', 'pipe_segment', 'green_space', 'streetlight',
                             'road'] LOOP
        IF TG_OP = 'TRUNCATE' THEN
            EXECUTE format('SELECT delivery_id FROM cim.%I WHERE delivery_id IS NOT NULL LIMIT 1', t) INTO used;
        ELSE
            EXECUTE format('SELECT x.delivery_id FROM cim.%I x JOIN old_rows o ON o.id = x.delivery_id LIMIT 1', t)
                INTO used;
        END IF;
        IF used IS NOT NULL THEN
            PERFORM cim.still_referenced(t, 'delivery_id', 'delivery', used::text);
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

-- 电梯: whether a building has a lift (房屋建筑调查 deliveries that record it). The health check
-- counts residential buildings of 4+ floors without one as needing 适老化改造.
ALTER TABLE cim.building ADD COLUMN has_lift boolean;

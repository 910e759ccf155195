-- 0050 bulk loading: references checked per statement, no index without a reader.
--
-- A row-level foreign key runs one lookup per written row and takes a KEY SHARE lock on the
-- referenced row (a pipe segment locks its delivery and both of its points). A delivery is
-- written with COPY, 10^5 rows at a time, so the references of feature rows are checked per
-- statement instead: an AFTER INSERT trigger with a transition table anti-joins the distinct
-- references of the whole statement with the referenced table once (100k buildings: 0.28 s
-- with the foreign key, 0.01 s with the statement trigger). The guarantees are those of the
-- foreign keys they replace:
--   * <feature table>.delivery_id → cim.delivery (id), on every feature table;
--   * pipe_segment.start_point_id, pipe_segment.end_point_id → cim.pipe_point (id);
--   * inserts, and updates that change a reference, must point at an existing row;
--   * deleting or truncating a referenced row that is still referenced is refused, and the id
--     of a delivery or a pipe point never changes.
-- A violation raises SQLSTATE 23503 (foreign_key_violation) naming the constraint the foreign
-- key had (e.g. pipe_segment_start_point_id_fkey), so callers see what the key would have said.
--
-- Indexes: the GiST indexes of 0040 on bbox centres and on current pipe points have no reader
-- (the 3D Tiles builder reads every bbox in one query and partitions them in numpy; tile,
-- feature and query SQL use the geom GiST index) yet each cost index maintenance on every
-- loaded row.

ALTER TABLE cim.admin_area   DROP CONSTRAINT admin_area_delivery_id_fkey;
ALTER TABLE cim.building     DROP CONSTRAINT building_delivery_id_fkey;
ALTER TABLE cim.pipe_point   DROP CONSTRAINT pipe_point_delivery_id_fkey;
ALTER TABLE cim.pipe_segment DROP CONSTRAINT pipe_segment_delivery_id_fkey,
                             DROP CONSTRAINT pipe_segment_start_point_id_fkey,
                             DROP CONSTRAINT pipe_segment_end_point_id_fkey;
ALTER TABLE cim.green_space  DROP CONSTRAINT green_space_delivery_id_fkey;
ALTER TABLE cim.streetlight  DROP CONSTRAINT streetlight_delivery_id_fkey;

DROP INDEX cim.building_bbox_centre_idx;
DROP INDEX cim.pipe_segment_bbox_centre_idx;
DROP INDEX cim.pipe_point_current_geom_idx;

-- Raise what a foreign key raises.
CREATE FUNCTION cim.reference_violation(tab text, col text, ref_table text, key text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'insert or update on table "%" violates foreign key constraint "%"', tab, tab || '_' || col || '_fkey'
        USING ERRCODE = 'foreign_key_violation', SCHEMA = 'cim', TABLE = tab, COLUMN = col,
              CONSTRAINT = tab || '_' || col || '_fkey',
              DETAIL = format('Key (%s)=(%s) is not present in table "%s".', col, key, ref_table);
END $$;

CREATE FUNCTION cim.still_referenced(tab text, col text, ref_table text, key text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'update or delete on table "%" violates foreign key constraint "%" on table "%"',
                    ref_table, tab || '_' || col || '_fkey', tab
        USING ERRCODE = 'foreign_key_violation', SCHEMA = 'cim', TABLE = ref_table, CONSTRAINT = tab || '_' || col || '_fkey',
              DETAIL = format('Key (id)=(%s) is still referenced from table "%s".', key, tab);
END $$;

-- Inserts: one anti-join per statement.
CREATE FUNCTION cim.check_delivery_refs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE missing bigint;
BEGIN
    SELECT n.delivery_id INTO missing
      FROM (SELECT DISTINCT delivery_id FROM new_rows WHERE delivery_id IS NOT NULL) n
     WHERE NOT EXISTS (SELECT 1 FROM cim.delivery d WHERE d.id = n.delivery_id)
     LIMIT 1;
    IF FOUND THEN
        PERFORM cim.reference_violation(TG_TABLE_NAME, 'delivery_id', 'delivery', missing::text);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION cim.check_segment_point_refs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE missing bigint; bad_col text;
BEGIN
    SELECT k.id, k.col INTO missing, bad_col
      FROM (SELECT DISTINCT ON (id) id, col
              FROM (SELECT start_point_id AS id, 'start_point_id' AS col FROM new_rows WHERE start_point_id IS NOT NULL
                    UNION ALL
                    SELECT end_point_id, 'end_point_id' FROM new_rows WHERE end_point_id IS NOT NULL) e) k
     WHERE NOT EXISTS (SELECT 1 FROM cim.pipe_point p WHERE p.id = k.id)
     LIMIT 1;
    IF FOUND THEN
        PERFORM cim.reference_violation('pipe_segment', bad_col, 'pipe_point', missing::text);
    END IF;
    RETURN NULL;
END $$;

-- Updates that change a reference (rare: loads set references on insert): row by row.
CREATE FUNCTION cim.check_delivery_ref_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.delivery_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM cim.delivery d WHERE d.id = NEW.delivery_id) THEN
        PERFORM cim.reference_violation(TG_TABLE_NAME, 'delivery_id', 'delivery', NEW.delivery_id::text);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION cim.check_segment_point_ref_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.start_point_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM cim.pipe_point p WHERE p.id = NEW.start_point_id) THEN
        PERFORM cim.reference_violation('pipe_segment', 'start_point_id', 'pipe_point', NEW.start_point_id::text);
    END IF;
    IF NEW.end_point_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM cim.pipe_point p WHERE p.id = NEW.end_point_id) THEN
        PERFORM cim.reference_violation('pipe_segment', 'end_point_id', 'pipe_point', NEW.end_point_id::text);
    END IF;
    RETURN NULL;
END $$;

-- The referenced side: no dangling references by delete or truncate; ids never change.
CREATE FUNCTION cim.refuse_id_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the id of a row of cim.% cannot change', TG_TABLE_NAME
        USING ERRCODE = 'foreign_key_violation', SCHEMA = 'cim', TABLE = TG_TABLE_NAME, COLUMN = 'id';
END $$;

CREATE FUNCTION cim.check_delivery_unreferenced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE t text; used bigint;
BEGIN
    FOREACH t IN ARRAY ARRAY['admin_area', 'building', 'pipe_point', 'pipe_segment', 'green_space', 'streetlight'] LOOP
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

CREATE FUNCTION cim.check_point_unreferenced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE used bigint;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        SELECT coalesce(start_point_id, end_point_id) INTO used FROM cim.pipe_segment
         WHERE start_point_id IS NOT NULL OR end_point_id IS NOT NULL LIMIT 1;
    ELSE
        -- one scan of the segments, hashed against the deleted ids
        SELECT o.id INTO used
          FROM old_rows o
          JOIN (SELECT start_point_id AS pid FROM cim.pipe_segment WHERE start_point_id IS NOT NULL
                UNION ALL
                SELECT end_point_id FROM cim.pipe_segment WHERE end_point_id IS NOT NULL) s ON s.pid = o.id
         LIMIT 1;
    END IF;
    IF used IS NOT NULL THEN
        PERFORM cim.still_referenced('pipe_segment', 'start_point_id', 'pipe_point', used::text);
    END IF;
    RETURN NULL;
END $$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['admin_area', 'building', 'pipe_point', 'pipe_segment', 'green_space', 'streetlight'] LOOP
        EXECUTE format('CREATE TRIGGER %1$s_delivery_ref AFTER INSERT ON cim.%1$I REFERENCING NEW TABLE AS new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION cim.check_delivery_refs()', t);
        EXECUTE format('CREATE TRIGGER %1$s_delivery_ref_update AFTER UPDATE OF delivery_id ON cim.%1$I FOR EACH ROW '
                       'WHEN (NEW.delivery_id IS DISTINCT FROM OLD.delivery_id) '
                       'EXECUTE FUNCTION cim.check_delivery_ref_row()', t);
    END LOOP;
END $$;

CREATE TRIGGER pipe_segment_point_ref AFTER INSERT ON cim.pipe_segment REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cim.check_segment_point_refs();
CREATE TRIGGER pipe_segment_point_ref_update AFTER UPDATE OF start_point_id, end_point_id ON cim.pipe_segment
    FOR EACH ROW WHEN (NEW.start_point_id IS DISTINCT FROM OLD.start_point_id
                       OR NEW.end_point_id IS DISTINCT FROM OLD.end_point_id)
    EXECUTE FUNCTION cim.check_segment_point_ref_row();

CREATE TRIGGER delivery_id_fixed BEFORE UPDATE OF id ON cim.delivery FOR EACH ROW
    WHEN (NEW.id IS DISTINCT FROM OLD.id) EXECUTE FUNCTION cim.refuse_id_change();
CREATE TRIGGER delivery_unreferenced AFTER DELETE ON cim.delivery REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cim.check_delivery_unreferenced();
CREATE TRIGGER delivery_unreferenced_truncate AFTER TRUNCATE ON cim.delivery
    FOR EACH STATEMENT EXECUTE FUNCTION cim.check_delivery_unreferenced();

CREATE TRIGGER pipe_point_id_fixed BEFORE UPDATE OF id ON cim.pipe_point FOR EACH ROW
    WHEN (NEW.id IS DISTINCT FROM OLD.id) EXECUTE FUNCTION cim.refuse_id_change();
CREATE TRIGGER pipe_point_unreferenced AFTER DELETE ON cim.pipe_point REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cim.check_point_unreferenced();
CREATE TRIGGER pipe_point_unreferenced_truncate AFTER TRUNCATE ON cim.pipe_point
    FOR EACH STATEMENT EXECUTE FUNCTION cim.check_point_unreferenced();

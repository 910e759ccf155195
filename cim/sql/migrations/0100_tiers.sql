-- 0100 linked tiers (省 ← 市 ← 县): instance identity, heartbeats, per-county DEMs, and the
-- triggers that make rows arriving by PostgreSQL logical replication behave like local loads.
--
-- Logical replication applies rows with session_replication_role = replica: ordinary
-- (ENABLE ORIGIN) triggers do not fire, and statement triggers never fire for replicated
-- INSERT / UPDATE / DELETE (only the initial table copy, a COPY, fires them). Hence:
--   * a row trigger on cim.delivery, ENABLE REPLICA, bumps the data versions of the scopes a
--     replicated delivery changes when it becomes current or leaves that state;
--   * a row trigger on cim.dem, ENABLE REPLICA, bumps the DEM's data version;
--   * the feature tables' statement version triggers are ENABLE ALWAYS, so the initial copy of a
--     subscription bumps them too;
--   * queueing county.changed (0060), announcing a task and announcing a version are ENABLE ALWAYS;
--   * the apply worker runs with an empty search_path: every function here names its schema.
-- Row identity across instances, the per-table preparation (replica identity covering
-- county_code, the read-only guard) and the publications themselves are applied by
-- `cim tier init / publish / subscribe` (cim/tiers.py), for whichever tables then exist.

-- The identity of this instance: its administrative code (GB/T 2260), name and level, and
-- the block its sequences number rows from (code × 10^10, so ids stay below 2^53).
CREATE TABLE cim.tier_instance (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    code        varchar(12) NOT NULL CHECK (code ~ '^[1-9][0-9]{5}$'),
    name        text NOT NULL,
    level       text NOT NULL CHECK (level IN ('province', 'city', 'county')),
    id_base     bigint NOT NULL CHECK (id_base > 0),
    dem_dir     text,              -- where DEM files received from lower tiers are written
    renumbered  jsonb NOT NULL DEFAULT '{}'::jsonb,   -- rows moved into the block, per table
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The county_code prefix an administrative code covers: a province (xx0000) its two digits, a
-- city (xxxx00) its four, a county its six.
CREATE FUNCTION cim.tier_prefix(code text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE WHEN substr(code, 3) = '0000' THEN substr(code, 1, 2)
                WHEN substr(code, 5) = '00' THEN substr(code, 1, 4)
                ELSE code END
$$;

-- Subscriptions to lower-tier instances (the PostgreSQL subscription of the same name carries
-- the rows whose county_code starts with prefix).
CREATE TABLE cim.tier_subscription (
    name         text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    county_code  varchar(12) NOT NULL UNIQUE,
    prefix       text NOT NULL,
    publication  text NOT NULL,
    publisher    text NOT NULL,           -- host:port/database, never the password
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- One heartbeat row per instance: written locally on a schedule, replicated upward.
CREATE TABLE cim.tier_heartbeat (
    county_code         varchar(12) PRIMARY KEY,     -- the instance's code
    name                text NOT NULL,
    level               text NOT NULL,
    software_version    text NOT NULL,
    schema_version      integer,
    dict_hash           text,
    started_at          timestamptz,                 -- start of the server process that wrote it
    db_started_at       timestamptz,
    beat_at             timestamptz NOT NULL,
    interval_s          real NOT NULL,
    last_delivery_id    bigint,
    last_delivery_at    timestamptz,
    current_deliveries  integer NOT NULL DEFAULT 0,
    data_versions       jsonb NOT NULL DEFAULT '{}'::jsonb,
    errors              jsonb NOT NULL DEFAULT '{}'::jsonb,
    replication         jsonb NOT NULL DEFAULT '{}'::jsonb,
    received_at         timestamptz                  -- set where the row arrives by replication
);

CREATE FUNCTION cim.tier_heartbeat_received() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.received_at := pg_catalog.clock_timestamp();
    RETURN NEW;
END $$;
CREATE TRIGGER tier_heartbeat_received BEFORE INSERT OR UPDATE ON cim.tier_heartbeat
    FOR EACH ROW EXECUTE FUNCTION cim.tier_heartbeat_received();
ALTER TABLE cim.tier_heartbeat ENABLE REPLICA TRIGGER tier_heartbeat_received;

-- Server errors (HTTP 5xx) of this instance, counted by the heartbeat; pruned by it.
CREATE TABLE cim.server_error (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    status  smallint NOT NULL,
    path    text
);
CREATE INDEX server_error_at_idx ON cim.server_error (at);

-- Per-county DEMs: one current DEM per county; '' is a DEM of the whole instance, used for the
-- features of a county without one of its own (and never replicated).
ALTER TABLE cim.dem ADD COLUMN county_code varchar(12) NOT NULL DEFAULT '';
UPDATE cim.dem d SET county_code = coalesce(
    (SELECT a.code FROM cim.admin_area a
      WHERE a.is_current AND a.level = 'county' AND ST_Intersects(a.geom, ST_Centroid(d.bounds))
      ORDER BY a.id LIMIT 1),
    (SELECT min(x.county_code) FROM cim.delivery x WHERE x.state = 'current'
      HAVING count(DISTINCT x.county_code) = 1),
    '');
DROP INDEX cim.dem_one_current_idx;
CREATE UNIQUE INDEX dem_one_current_idx ON cim.dem (county_code) WHERE is_current;

-- The bytes of a county's current DEM, in parts, for instances that publish: a DEM file is not
-- in the database, so this is how it reaches the subscribers (cim.raster writes it back to a file).
CREATE TABLE cim.dem_file (
    county_code  varchar(12) NOT NULL,
    sha256       char(64) NOT NULL,
    part         integer NOT NULL CHECK (part >= 0),
    parts        integer NOT NULL CHECK (parts > 0),
    data         bytea NOT NULL,
    PRIMARY KEY (county_code, sha256, part)
);

-- Replicated deliveries move the data versions of the tables of their scopes.
CREATE FUNCTION cim.tier_delivery_versions() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    scopes text[];
    t text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.state NOT IN ('current', 'superseded') THEN RETURN NULL; END IF;
        scopes := NEW.layers;
    ELSIF TG_OP = 'DELETE' THEN
        scopes := OLD.layers;
    ELSE
        IF NEW.state IS NOT DISTINCT FROM OLD.state AND NEW.layers IS NOT DISTINCT FROM OLD.layers THEN
            RETURN NULL;
        END IF;
        IF NEW.state NOT IN ('current', 'superseded') AND OLD.state NOT IN ('current', 'superseded') THEN
            RETURN NULL;
        END IF;
        scopes := NEW.layers || OLD.layers;
    END IF;
    FOR t IN SELECT DISTINCT pg_catalog.split_part(s, ':', 1) FROM pg_catalog.unnest(scopes) AS s LOOP
        INSERT INTO cim.data_version AS d (source_table, version, changed_at)
        VALUES (t, 2, pg_catalog.now())
        ON CONFLICT (source_table) DO UPDATE SET version = d.version + 1, changed_at = pg_catalog.now();
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER delivery_versions_replica AFTER INSERT OR UPDATE OR DELETE ON cim.delivery
    FOR EACH ROW EXECUTE FUNCTION cim.tier_delivery_versions();
ALTER TABLE cim.delivery ENABLE REPLICA TRIGGER delivery_versions_replica;

-- Replicated DEM registrations move the DEM's data version (row trigger: the statement trigger
-- of 0040 does not fire for replicated rows).
CREATE FUNCTION cim.tier_dem_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cim.data_version AS d (source_table, version, changed_at)
    VALUES ('dem', 2, pg_catalog.now())
    ON CONFLICT (source_table) DO UPDATE SET version = d.version + 1, changed_at = pg_catalog.now();
    RETURN NULL;
END $$;
CREATE TRIGGER dem_version_replica AFTER INSERT OR UPDATE OR DELETE ON cim.dem
    FOR EACH ROW EXECUTE FUNCTION cim.tier_dem_version();
ALTER TABLE cim.dem ENABLE REPLICA TRIGGER dem_version_replica;
ALTER TABLE cim.dem ENABLE ALWAYS TRIGGER dem_version;

-- Fired for replicated rows as well: county.changed, the task and data-version announcements,
-- and the feature tables' version counters (for the initial copy of a subscription).
ALTER TABLE cim.delivery ENABLE ALWAYS TRIGGER delivery_county_changed;
ALTER TABLE cim.task ENABLE ALWAYS TRIGGER task_notify;
ALTER TABLE cim.data_version ENABLE ALWAYS TRIGGER data_version_notify;
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['admin_area', 'building', 'pipe_point', 'pipe_segment', 'green_space', 'streetlight'] LOOP
        EXECUTE format('ALTER TABLE cim.%1$I ENABLE ALWAYS TRIGGER %2$I', t, t || '_version');
        EXECUTE format('ALTER TABLE cim.%1$I ENABLE ALWAYS TRIGGER %2$I', t, t || '_version_truncate');
    END LOOP;
END $$;

-- A subscriber is read-only for the rows it receives: local writes (ingest, SQL) to a county
-- a subscription carries are refused. Row triggers created by cim.tier_prepare_table, enabled
-- (ORIGIN: never in the apply worker) while this instance has subscriptions.
CREATE FUNCTION cim.tier_refuse_replicated() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    codes text[];
    code text;
    sub record;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'cim.% holds rows replicated from lower-tier platforms; TRUNCATE is refused', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege', SCHEMA = 'cim', TABLE = TG_TABLE_NAME;
    END IF;
    IF TG_OP = 'INSERT' THEN
        codes := ARRAY[NEW.county_code::text];
    ELSIF TG_OP = 'DELETE' THEN
        codes := ARRAY[OLD.county_code::text];
    ELSE
        codes := ARRAY[NEW.county_code::text, OLD.county_code::text];
    END IF;
    FOREACH code IN ARRAY codes LOOP
        SELECT s.name, s.county_code INTO sub FROM cim.tier_subscription s
         WHERE pg_catalog.starts_with(code, s.prefix) LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'rows of county % in cim.% are replicated from the platform of % (subscription %) and are read-only here',
                            code, TG_TABLE_NAME, sub.county_code, sub.name
                USING ERRCODE = 'insufficient_privilege', SCHEMA = 'cim', TABLE = TG_TABLE_NAME,
                      HINT = 'change them on the lower-tier platform; they arrive here by replication';
        END IF;
    END LOOP;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;

-- Prepare one replicated table (idempotent): a unique (id, county_code) index as its replica
-- identity, since a publication's row filter on county_code must be covered by the replica
-- identity to publish UPDATE and DELETE; version triggers fired for replica sessions; the
-- read-only guard (created disabled).
CREATE FUNCTION cim.tier_prepare_table(tab text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    has_id boolean;
BEGIN
    IF to_regclass('cim.' || quote_ident(tab)) IS NULL THEN
        RAISE EXCEPTION 'no table cim.%', tab;
    END IF;
    SELECT EXISTS (SELECT 1 FROM information_schema.columns
                    WHERE table_schema = 'cim' AND table_name = tab AND column_name = 'id') INTO has_id;
    IF has_id THEN
        EXECUTE format('CREATE UNIQUE INDEX IF NOT EXISTS %I ON cim.%I (id, county_code)', tab || '_tier_identity_idx', tab);
        EXECUTE format('ALTER TABLE cim.%I REPLICA IDENTITY USING INDEX %I', tab, tab || '_tier_identity_idx');
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = ('cim.' || quote_ident(tab))::regclass
                AND tgname = tab || '_version') THEN
        EXECUTE format('ALTER TABLE cim.%I ENABLE ALWAYS TRIGGER %I', tab, tab || '_version');
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = ('cim.' || quote_ident(tab))::regclass
                AND tgname = tab || '_version_truncate') THEN
        EXECUTE format('ALTER TABLE cim.%I ENABLE ALWAYS TRIGGER %I', tab, tab || '_version_truncate');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = ('cim.' || quote_ident(tab))::regclass
                    AND tgname = tab || '_tier_readonly') THEN
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE ON cim.%I FOR EACH ROW '
                       'EXECUTE FUNCTION cim.tier_refuse_replicated()', tab || '_tier_readonly', tab);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON cim.%I FOR EACH STATEMENT '
                       'EXECUTE FUNCTION cim.tier_refuse_replicated()', tab || '_tier_readonly_truncate', tab);
        EXECUTE format('ALTER TABLE cim.%I DISABLE TRIGGER %I', tab, tab || '_tier_readonly');
        EXECUTE format('ALTER TABLE cim.%I DISABLE TRIGGER %I', tab, tab || '_tier_readonly_truncate');
    END IF;
END $$;

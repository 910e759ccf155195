-- 0070 hazard ledger (设施危险源及风险隐患管理台账, domain.md §4.1).
--
-- cim.hazard holds one entry per hazard: found by an automatic rule over the stored model
-- (source 'rule', rule_id and rule_key set) or registered by people (patrol, hotline …).
-- `version` is the optimistic lock of the ORM (SQLAlchemy version_id_col): every change of an
-- entry raises it, and a change made against an older version is refused (HTTP 409).
-- Every change writes a cim.hazard_event row in the same transaction. Numbers
-- `<county>-<yyyy>-<seq>` come from cim.hazard_counter, one row per (county, year) updated in the
-- transaction that creates the entry, so a rolled-back registration leaves no gap.
-- 逾期 (overdue) is computed from `deadline`, never stored; `condition_cleared` marks an automatic
-- entry whose condition a rescan no longer finds (条件已消除, for verification, not a closure).
-- Codes (status, source, facility_type, hazard_class, risk_level, supervision) are described in
-- cimplus/hazards/ledger.yaml.

CREATE TABLE cim.hazard (
    id                  bigserial PRIMARY KEY,
    number              text NOT NULL UNIQUE,
    version             integer NOT NULL DEFAULT 1,
    source              text NOT NULL CHECK (source IN ('survey', 'patrol', 'iot', 'health_check', 'hotline',
                                                        'assigned', 'rule')),
    rule_id             text,
    rule_key            text,               -- rule + facility keys: how a rescan finds the entry again
    facility_type       text NOT NULL CHECK (facility_type ~ '^[a-z_]+$'),
    facility_refs       jsonb NOT NULL DEFAULT '[]'::jsonb,   -- [{table, id, key, code}]
    facility_keys       text[] NOT NULL DEFAULT '{}',         -- the refs' keys, sorted
    province_code       varchar(12),
    city_code           varchar(12),
    county_code         varchar(12) NOT NULL,
    street_code         varchar(12),
    community_code      varchar(12),
    title               text NOT NULL,
    description         text,
    location            text,
    hazard_class        text NOT NULL DEFAULT 'general' CHECK (hazard_class IN ('general', 'major')),
    risk_level          smallint NOT NULL CHECK (risk_level BETWEEN 1 AND 4),   -- 1 一级 (红) … 4 四级 (蓝)
    found_at            timestamptz NOT NULL DEFAULT now(),
    found_by            text NOT NULL,
    -- 六定: 定项目 (title), 定措施, 定资金, 定责任人, 定时间, 定复查人
    responsible_unit    text,
    responsible_person  text,
    contact             text,
    measures            text,
    interim_controls    text,
    budget              numeric(14, 2) CHECK (budget IS NULL OR budget >= 0),
    deadline            date,
    reviewer            text,
    supervision         text NOT NULL DEFAULT 'none' CHECK (supervision IN ('none', 'county', 'city', 'province')),
    status              text NOT NULL CHECK (status IN ('pending', 'registered', 'rectifying', 'awaiting_acceptance',
                                                        'closed', 'dismissed')),
    condition_cleared   boolean NOT NULL DEFAULT false,
    cleared_at          timestamptz,
    verified_by         text,
    verified_at         timestamptz,
    verify_result       text,
    closed_by           text,
    closed_at           timestamptz,
    evidence            jsonb NOT NULL DEFAULT '{}'::jsonb,  -- measured vs required, inputs, clause
    previous_id         bigint REFERENCES cim.hazard (id),  -- the entry this one recurs from
    scanned_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    shape               geometry(Geometry, 4490) NOT NULL,  -- crossing / closest approach / the facility
    geom                geometry(Point, 4490) NOT NULL,     -- where the map symbol goes (the layer's geometry)
    -- the public layer `hazards` (layers/catalog/hazards.yaml) shows the entries whose is_current
    -- is true, like every layer: here the open ones (not 已销号 / 不成立)
    is_current          boolean GENERATED ALWAYS AS (status NOT IN ('closed', 'dismissed')) STORED,
    CHECK ((source = 'rule') = (rule_id IS NOT NULL AND rule_key IS NOT NULL))
);
-- one open automatic entry per rule and facilities: a rescan updates it, never duplicates it
CREATE UNIQUE INDEX hazard_open_rule_key_idx ON cim.hazard (rule_key)
    WHERE rule_key IS NOT NULL AND status NOT IN ('closed', 'dismissed');
CREATE INDEX hazard_rule_key_idx ON cim.hazard (rule_key, id DESC) WHERE rule_key IS NOT NULL;
CREATE INDEX hazard_county_idx ON cim.hazard (county_code, status);
CREATE INDEX hazard_rule_idx ON cim.hazard (county_code, rule_id);
CREATE INDEX hazard_geom_idx ON cim.hazard USING gist (geom);
CREATE INDEX hazard_shape_idx ON cim.hazard USING gist (shape);
CREATE INDEX hazard_previous_idx ON cim.hazard (previous_id) WHERE previous_id IS NOT NULL;

-- Every change of an entry: who, when, from, to, comment and the changed fields (old → new).
CREATE TABLE cim.hazard_event (
    id           bigserial PRIMARY KEY,
    hazard_id    bigint NOT NULL REFERENCES cim.hazard (id),
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    role         text,
    action       text NOT NULL,
    from_status  text,
    to_status    text,
    comment      text,
    changes      jsonb NOT NULL DEFAULT '{}'::jsonb,   -- {field: [old, new]}
    version      integer                                -- the entry's version after the change
);
CREATE INDEX hazard_event_hazard_idx ON cim.hazard_event (hazard_id, id);

-- Photos (before / after) and reports: the bytes live under $CIM_HOME/hazards/attachments,
-- named by their SHA-256; the row keeps the sniffed media type and the name as uploaded.
CREATE TABLE cim.hazard_attachment (
    id           bigserial PRIMARY KEY,
    hazard_id    bigint NOT NULL REFERENCES cim.hazard (id),
    kind         text NOT NULL CHECK (kind IN ('before', 'after', 'report', 'other')),
    sha256       char(64) NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    media_type   text NOT NULL CHECK (media_type IN ('image/jpeg', 'image/png', 'image/webp', 'application/pdf')),
    size_bytes   bigint NOT NULL CHECK (size_bytes > 0),
    file_name    text NOT NULL,
    caption      text,
    uploaded_by  text NOT NULL,
    uploaded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX hazard_attachment_hazard_idx ON cim.hazard_attachment (hazard_id, id);

-- Gap-free numbers per county and year.
CREATE TABLE cim.hazard_counter (
    county_code  varchar(12) NOT NULL,
    year         smallint NOT NULL,
    last         integer NOT NULL DEFAULT 0 CHECK (last >= 0),
    PRIMARY KEY (county_code, year)
);

-- What each rule last saw of each input scope ('building', 'pipe_segment:RQ' …): the deliveries
-- whose rows were current. A rescan compares the rows of the deliveries current now with those
-- and evaluates the rule only near what changed (docs/hazards.md, "Rescans").
CREATE TABLE cim.hazard_scan_state (
    county_code   varchar(12) NOT NULL,
    rule_id       text NOT NULL,
    scope         text NOT NULL,
    delivery_ids  bigint[] NOT NULL,
    scanned_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (county_code, rule_id, scope)
);

-- One row per scan run (CLI, API, background rescan) with its counts per rule.
CREATE TABLE cim.hazard_scan (
    id           bigserial PRIMARY KEY,
    county_code  varchar(12) NOT NULL,
    mode         text NOT NULL CHECK (mode IN ('full', 'incremental')),
    rules        text[] NOT NULL,
    actor        text NOT NULL,
    delivery_id  bigint,
    counts       jsonb NOT NULL DEFAULT '{}'::jsonb,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX hazard_scan_county_idx ON cim.hazard_scan (county_code, id);

-- Tiles and OGC caches follow the ledger through its data version.
INSERT INTO cim.data_version (source_table) VALUES ('hazard') ON CONFLICT DO NOTHING;
CREATE TRIGGER hazard_version AFTER INSERT OR UPDATE OR DELETE ON cim.hazard
    FOR EACH STATEMENT EXECUTE FUNCTION cim.bump_data_version();
CREATE TRIGGER hazard_version_truncate AFTER TRUNCATE ON cim.hazard
    FOR EACH STATEMENT EXECUTE FUNCTION cim.bump_data_version();

-- Roles of the ledger's workflow (cim/auth.py): county hazard staff, county supervisors, and the
-- city and province levels that supervise (挂牌督办).
ALTER TABLE cim.api_token DROP CONSTRAINT api_token_role_check;
ALTER TABLE cim.api_token ADD CONSTRAINT api_token_role_check
    CHECK (role IN ('admin', 'uploader', 'viewer', 'client', 'inspector', 'supervisor', 'city', 'province'));

-- Metric frames for exact distances: a transverse Mercator (scale 1) centred on a 0.1° cell,
-- registered on demand by cimplus.hazards.frame under SRIDs 600000–998999 (owner rights, so
-- the platform's role need not own spatial_ref_sys).
CREATE FUNCTION cim.metric_frame(lon0 double precision, lat0 double precision) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    lon10 integer := round(lon0 * 10);
    lat10 integer := round(lat0 * 10);
    code integer;
BEGIN
    IF lon10 NOT BETWEEN 700 AND 1360 OR lat10 NOT BETWEEN 0 AND 599 THEN
        RETURN NULL;
    END IF;
    code := 600000 + (lon10 - 700) * 600 + lat10;
    INSERT INTO public.spatial_ref_sys (srid, auth_name, auth_srid, srtext, proj4text)
    VALUES (code, 'CIM', code, NULL,
            format('+proj=tmerc +lat_0=%s +lon_0=%s +k=1 +x_0=0 +y_0=0 +ellps=GRS80 +units=m +no_defs',
                   lat10 / 10.0, lon10 / 10.0))
    ON CONFLICT (srid) DO NOTHING;
    RETURN code;
END $$;

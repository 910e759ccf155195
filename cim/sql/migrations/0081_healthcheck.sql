-- 0081 城市体检 (urban health check): inputs, immutable runs and their values, the latest-values view.
--
-- Inputs the city model cannot hold are loaded as data with their year (cimplus/healthcheck/inputs.py):
-- resident population per admin area (cim.healthcheck_population) and the built-up area (建成区)
-- polygon of a county (cim.healthcheck_builtup). Each upload is one cim.healthcheck_input row; a
-- newer upload of the same area and year supersedes an older one for later runs, and earlier rows
-- stay, so a run's inputs can always be read back.
--
-- A run (cim.healthcheck_run) computes every indicator of the catalogue for every admin area of the
-- chosen levels and keeps one cim.healthcheck_value row per (indicator, area). Runs are immutable:
-- a run is inserted 'running', its values are inserted while it runs, and it ends once as 'done' or
-- 'failed'; after that neither the run nor its values can be updated or deleted (triggers below),
-- so this year's figures can always be compared with last year's as they were published. The run
-- keeps the indicator definitions it used (catalogue), the data versions of the tables it read
-- and the input uploads it used.
--
-- cim.healthcheck_latest is the layer `healthcheck` of the catalogue: the values of the latest run
-- per admin area and indicator, with the area's current geometry.

CREATE TABLE cim.healthcheck_input (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('population', 'builtup')),
    years        smallint[] NOT NULL,
    county_code  varchar(12),                 -- builtup: its county
    file_name    text NOT NULL,
    sha256       char(64) NOT NULL,
    rows         integer NOT NULL,
    loaded_by    text NOT NULL,
    loaded_at    timestamptz NOT NULL DEFAULT now(),
    note         text
);

CREATE TABLE cim.healthcheck_population (
    input_id     bigint NOT NULL REFERENCES cim.healthcheck_input (id),
    code         varchar(12) NOT NULL,        -- admin area code
    name         text,
    year         smallint NOT NULL,
    population   bigint NOT NULL CHECK (population >= 0),   -- 常住人口 (persons)
    PRIMARY KEY (input_id, code, year)
);
CREATE INDEX healthcheck_population_code_idx ON cim.healthcheck_population (code, year);

CREATE TABLE cim.healthcheck_builtup (
    input_id     bigint NOT NULL REFERENCES cim.healthcheck_input (id),
    county_code  varchar(12) NOT NULL,
    year         smallint NOT NULL,
    name         text,
    geom         geometry(MultiPolygon, 4490) NOT NULL,
    PRIMARY KEY (input_id, county_code, year)
);
CREATE INDEX healthcheck_builtup_geom_idx ON cim.healthcheck_builtup USING gist (geom);

CREATE TABLE cim.healthcheck_run (
    id             bigserial PRIMARY KEY,
    year           smallint NOT NULL,
    counties       varchar(12)[] NOT NULL,            -- scope: the counties checked
    levels         text[] NOT NULL,                   -- admin levels checked (county, street, community)
    state          text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'failed')),
    task_id        bigint,                            -- cim.task that ran it (HTTP runs)
    backend_pid    integer NOT NULL DEFAULT pg_backend_pid(),  -- the session computing it (a stale run's
                                                      -- session is gone: the next run closes it as failed)
    catalogue      jsonb NOT NULL,                    -- indicator id → definition used
    catalogue_sha  char(64) NOT NULL,
    metric_srid    integer,                           -- CGCS2000 3° Gauss-Krüger zone of lengths and areas
    data_versions  jsonb NOT NULL DEFAULT '{}'::jsonb,
    inputs         jsonb NOT NULL DEFAULT '{}'::jsonb,
    classes        jsonb NOT NULL DEFAULT '{}'::jsonb, -- choropleth classes per indicator and level
    summary        jsonb NOT NULL DEFAULT '{}'::jsonb,
    error          text,
    created_by     text NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    elapsed_s      double precision
);
CREATE INDEX healthcheck_run_year_idx ON cim.healthcheck_run (year, id);

CREATE TABLE cim.healthcheck_value (
    id            bigserial PRIMARY KEY,
    run_id        bigint NOT NULL REFERENCES cim.healthcheck_run (id),
    indicator     text NOT NULL,
    area_code     varchar(12) NOT NULL,
    area_name     text,
    area_level    text NOT NULL,
    parent_code   varchar(12),
    county_code   varchar(12),
    state         text NOT NULL CHECK (state IN ('computed', 'not_computed')),
    value         double precision,
    numerator     double precision,
    denominator   double precision,
    threshold     double precision,
    op            text,                  -- comparison of the threshold: > >= < <=
    pass          boolean,               -- null: no threshold, or not computed
    class_no      smallint,              -- choropleth class (run.classes) of the value
    color         text,
    reason_code   text,                  -- why not computed
    reason_zh     text,
    reason_en     text,
    detail        jsonb,
    UNIQUE (run_id, indicator, area_code),
    CHECK (state = 'computed' OR (value IS NULL AND reason_code IS NOT NULL))
);
CREATE INDEX healthcheck_value_area_idx ON cim.healthcheck_value (area_code, indicator, run_id);

-- Immutability ------------------------------------------------------------------------------------

CREATE FUNCTION cim.healthcheck_refuse() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'cim.% is immutable: % refused (城市体检的运行结果和输入数据不可修改)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation', SCHEMA = 'cim', TABLE = TG_TABLE_NAME;
END $$;

-- A run changes once: from running to done or failed, keeping what defines it.
CREATE FUNCTION cim.healthcheck_run_finish_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state <> 'running' OR NEW.state = 'running'
       OR NEW.id <> OLD.id OR NEW.year <> OLD.year OR NEW.counties <> OLD.counties OR NEW.levels <> OLD.levels
       OR NEW.catalogue <> OLD.catalogue OR NEW.catalogue_sha <> OLD.catalogue_sha
       OR NEW.created_by <> OLD.created_by OR NEW.started_at <> OLD.started_at
       OR NEW.task_id IS DISTINCT FROM OLD.task_id OR NEW.backend_pid <> OLD.backend_pid THEN
        RAISE EXCEPTION 'health-check run % is immutable once % (城市体检运行结果不可修改)', OLD.id, OLD.state
            USING ERRCODE = 'integrity_constraint_violation', SCHEMA = 'cim', TABLE = 'healthcheck_run';
    END IF;
    RETURN NEW;
END $$;

-- Values are written only while their run is running.
CREATE FUNCTION cim.healthcheck_value_while_running() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE bad bigint;
BEGIN
    SELECT DISTINCT n.run_id INTO bad FROM new_rows n JOIN cim.healthcheck_run r ON r.id = n.run_id
     WHERE r.state <> 'running' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'health-check run % is finished: no values can be added (城市体检运行已结束)', bad
            USING ERRCODE = 'integrity_constraint_violation', SCHEMA = 'cim', TABLE = 'healthcheck_value';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER healthcheck_run_update BEFORE UPDATE ON cim.healthcheck_run
    FOR EACH ROW EXECUTE FUNCTION cim.healthcheck_run_finish_only();
CREATE TRIGGER healthcheck_value_insert AFTER INSERT ON cim.healthcheck_value REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cim.healthcheck_value_while_running();

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['healthcheck_run', 'healthcheck_value', 'healthcheck_input', 'healthcheck_population',
                             'healthcheck_builtup'] LOOP
        EXECUTE format('CREATE TRIGGER %1$s_no_delete BEFORE DELETE ON cim.%1$I '
                       'FOR EACH ROW EXECUTE FUNCTION cim.healthcheck_refuse()', t);
        EXECUTE format('CREATE TRIGGER %1$s_no_truncate BEFORE TRUNCATE ON cim.%1$I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION cim.healthcheck_refuse()', t);
        IF t NOT IN ('healthcheck_run') THEN
            EXECUTE format('CREATE TRIGGER %1$s_no_update BEFORE UPDATE ON cim.%1$I '
                           'FOR EACH ROW EXECUTE FUNCTION cim.healthcheck_refuse()', t);
        END IF;
    END LOOP;
END $$;

-- Data versions: the healthcheck layer follows its runs (and the admin areas it draws).
INSERT INTO cim.data_version (source_table) VALUES ('healthcheck_run'), ('healthcheck_input') ON CONFLICT DO NOTHING;
CREATE TRIGGER healthcheck_run_version AFTER INSERT OR UPDATE ON cim.healthcheck_run
    FOR EACH STATEMENT EXECUTE FUNCTION cim.bump_data_version();
CREATE TRIGGER healthcheck_input_version AFTER INSERT ON cim.healthcheck_input
    FOR EACH STATEMENT EXECUTE FUNCTION cim.bump_data_version();

-- The layer: the latest finished run's value per admin area and indicator (latest year first,
-- then the latest run of that year), drawn with the area's current geometry.
CREATE VIEW cim.healthcheck_latest AS
SELECT l.id, l.run_id, l.year, l.indicator,
       l.catalogue -> l.indicator ->> 'name_zh' AS indicator_name,
       l.catalogue -> l.indicator ->> 'name_en' AS indicator_name_en,
       l.catalogue -> l.indicator ->> 'dimension' AS dimension,
       l.catalogue -> l.indicator ->> 'level' AS check_level,
       l.catalogue -> l.indicator ->> 'unit' AS unit,
       l.area_code, l.area_name, l.area_level, l.parent_code, l.county_code,
       l.state, l.value, l.threshold, l.op, l.pass,
       CASE WHEN l.state <> 'computed' THEN 'not_computed' WHEN l.pass THEN 'pass'
            WHEN NOT l.pass THEN 'fail' ELSE 'none' END AS pass_state,
       l.class_no, l.color, l.reason_zh,
       true AS is_current,
       a.geom::geometry(MultiPolygon, 4490) AS geom
  FROM (SELECT DISTINCT ON (v.area_code, v.indicator) v.*, r.year, r.catalogue
          FROM cim.healthcheck_value v
          JOIN cim.healthcheck_run r ON r.id = v.run_id
         WHERE r.state = 'done'
         ORDER BY v.area_code, v.indicator, r.year DESC, r.id DESC) l
  JOIN cim.admin_area a ON a.code = l.area_code AND a.is_current;

-- 0001 core: schema, deliveries, access control, audit, data versions.
-- Every geometry is stored in CGCS2000 geographic (EPSG:4490).

CREATE SCHEMA IF NOT EXISTS cim;

-- One row per ingest batch. Feature rows point back here through delivery_id.
CREATE TABLE cim.delivery (
    id              bigserial PRIMARY KEY,
    county_code     varchar(12) NOT NULL,
    file_name       text NOT NULL,
    sha256          char(64) NOT NULL,
    size_bytes      bigint,
    archive_path    text,
    profile         text,
    layers          text[] NOT NULL DEFAULT '{}',
    source_crs      text,
    encoding        text,
    counts          jsonb NOT NULL DEFAULT '{}'::jsonb,
    state           text NOT NULL DEFAULT 'received'
                    CHECK (state IN ('received', 'validating', 'validated', 'rejected',
                                     'loading', 'current', 'superseded', 'failed')),
    dry_run         boolean NOT NULL DEFAULT false,
    submitted_by    text NOT NULL,
    submitted_at    timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    message         text
);
CREATE INDEX delivery_county_idx ON cim.delivery (county_code, state);
CREATE INDEX delivery_sha_idx ON cim.delivery (sha256);

-- API tokens: only a SHA-256 digest of the secret is kept.
CREATE TABLE cim.api_token (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'uploader', 'viewer', 'client')),
    counties      varchar(12)[] NOT NULL DEFAULT '{}',
    token_prefix  varchar(12) NOT NULL,
    token_hash    bytea NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);

-- Every write is recorded: who, when, what, from where.
CREATE TABLE cim.audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    role         text,
    token_id     bigint,
    action       text NOT NULL,
    target       text,
    county_code  varchar(12),
    client_addr  text,
    ok           boolean NOT NULL DEFAULT true,
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at_idx ON cim.audit_log (at);

-- Data version per source table, bumped by a statement trigger on every change.
-- A layer's version is the version of its source table; caches key on it.
CREATE TABLE cim.data_version (
    source_table  text PRIMARY KEY,
    version       bigint NOT NULL DEFAULT 1,
    changed_at    timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION cim.bump_data_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cim.data_version AS d (source_table, version, changed_at)
    VALUES (TG_TABLE_NAME, 2, now())
    ON CONFLICT (source_table)
    DO UPDATE SET version = d.version + 1, changed_at = now();
    RETURN NULL;
END $$;

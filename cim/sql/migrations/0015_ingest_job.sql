-- 0015 ingest jobs of the upload API (api/routers/ingest.py, ingest/jobs.py).
-- A job is one upload: its files live under $CIM_HOME/uploads/<id>/, its reports beside them.
-- Jobs run in a background worker; at server start, jobs left in a running state are failed.

CREATE TABLE cim.ingest_job (
    id            text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{32}$'),
    county_code   varchar(12) NOT NULL,
    profile       text,
    dry_run       boolean NOT NULL DEFAULT false,
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'reading', 'validating', 'loading', 'awaiting_confirmation',
                                   'done', 'rejected', 'failed', 'cancelled')),
    progress      smallint NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    files         text[] NOT NULL,
    work_dir      text NOT NULL,
    counts        jsonb NOT NULL DEFAULT '{}'::jsonb,
    findings      jsonb NOT NULL DEFAULT '{}'::jsonb,
    delivery_id   bigint REFERENCES cim.delivery (id),
    outcome       text,            -- loaded | duplicate | dry_run | rejected
    message_zh    text,
    message_en    text,
    submitted_by  text NOT NULL,
    token_id      bigint,
    principal     jsonb NOT NULL DEFAULT '{}'::jsonb,
    client_addr   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX ingest_job_state_idx ON cim.ingest_job (state);
CREATE INDEX ingest_job_county_idx ON cim.ingest_job (county_code, created_at);

-- 0060 background tasks: one queue in the database for every server process and host.
--
-- A task is claimed with FOR UPDATE SKIP LOCKED, so each runs in exactly one process however
-- many servers share the database. A running task's worker writes heartbeat_at; a task whose
-- heartbeat stops (its process died) is queued again until max_attempts, then failed with the
-- reason. dedupe_key keeps at most one *queued* task per key (a county rescan asked for twice
-- before it starts runs once; asked for while it runs, it runs once more afterwards).
-- Workers LISTEN on cim_task: a new task is picked up at once, not at the next poll.

CREATE TABLE cim.task (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.]*$'),
    dedupe_key    text,
    args          jsonb NOT NULL DEFAULT '{}'::jsonb,
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    priority      smallint NOT NULL DEFAULT 0,
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    run_after     timestamptz NOT NULL DEFAULT now(),
    progress      smallint NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    message       text,
    result        jsonb,
    error         text,
    worker        text,              -- host:pid of the process running it
    created_by    text NOT NULL DEFAULT 'system',
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    heartbeat_at  timestamptz,
    finished_at   timestamptz
);
CREATE UNIQUE INDEX task_dedupe_queued_idx ON cim.task (dedupe_key) WHERE state = 'queued';
CREATE INDEX task_queued_idx ON cim.task (priority DESC, id) WHERE state = 'queued';
CREATE INDEX task_running_idx ON cim.task (heartbeat_at) WHERE state = 'running';
CREATE INDEX task_kind_idx ON cim.task (kind, created_at);

CREATE FUNCTION cim.notify_task() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cim_task', NEW.kind);
    RETURN NULL;
END $$;

CREATE TRIGGER task_notify AFTER INSERT ON cim.task
    FOR EACH ROW EXECUTE FUNCTION cim.notify_task();

-- A delivery that becomes current (a load, a restore, or rows replicated from a lower-tier
-- instance) queues one 'county.changed' task per county: the CIM+ applications follow the
-- model through it (e.g. the hazard ledger rescans the county) without ingest knowing them.
CREATE FUNCTION cim.queue_county_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'current' AND (TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM 'current') THEN
        INSERT INTO cim.task (kind, dedupe_key, args, created_by)
        VALUES ('county.changed', 'county.changed:' || NEW.county_code,
                jsonb_build_object('county', NEW.county_code, 'delivery_id', NEW.id), 'delivery:' || NEW.id)
        ON CONFLICT (dedupe_key) WHERE state = 'queued' DO NOTHING;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER delivery_county_changed AFTER INSERT OR UPDATE OF state ON cim.delivery
    FOR EACH ROW EXECUTE FUNCTION cim.queue_county_changed();

-- 0016 ingest jobs run in a child process: the API asks it to stop through the job row.
ALTER TABLE cim.ingest_job
    ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false,
    ADD COLUMN worker_pid integer;

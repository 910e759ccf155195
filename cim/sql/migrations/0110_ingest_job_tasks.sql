-- 0110 upload jobs run as background tasks (kind 'ingest.job', args {"job_id", "confirm"}).
--
-- The job row and its task are written in one transaction; any server process (any host) claims
-- the task with FOR UPDATE SKIP LOCKED. A job ends itself (done, rejected, cancelled, awaiting
-- confirmation); when its task ends without the job ending (the process running it died and the
-- reaper gave up, or the task failed), the job follows the task here, whoever changed the task:
--   task queued again after running  → job 'queued' again, with the reason (nothing was loaded:
--                                      the job becomes done inside the load transaction);
--   task failed or cancelled         → job 'failed' with the task's error.
-- So no job stays 'loading' behind a dead process.

CREATE FUNCTION cim.ingest_job_follows_task() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IN ('failed', 'cancelled') THEN
        UPDATE cim.ingest_job
           SET state = 'failed', progress = 100, finished_at = now(), updated_at = now(),
               message_zh = '入库任务未能完成，数据库未改动，请重新提交（' || coalesce(NEW.error, NEW.state) || '）',
               message_en = 'the ingest job could not finish; nothing was loaded, please resubmit ('
                            || coalesce(NEW.error, NEW.state) || ')'
         WHERE id = NEW.args->>'job_id' AND state IN ('queued', 'reading', 'validating', 'loading');
    ELSIF NEW.state = 'queued' AND OLD.state = 'running' THEN
        UPDATE cim.ingest_job
           SET state = 'queued', progress = 0, updated_at = now(),
               message_zh = '上次执行中断，数据库未改动，已重新排队（' || coalesce(NEW.error, '') || '）',
               message_en = 'the previous attempt was interrupted; nothing was loaded; queued again ('
                            || coalesce(NEW.error, '') || ')'
         WHERE id = NEW.args->>'job_id' AND state IN ('queued', 'reading', 'validating', 'loading');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER task_ingest_job AFTER UPDATE OF state ON cim.task
    FOR EACH ROW WHEN (NEW.kind = 'ingest.job' AND NEW.state IS DISTINCT FROM OLD.state)
    EXECUTE FUNCTION cim.ingest_job_follows_task();

-- Jobs the in-process runner of earlier versions left running have no task: they cannot resume.
UPDATE cim.ingest_job
   SET state = 'failed', finished_at = now(), updated_at = now(),
       message_zh = '服务升级时任务未完成，数据库未改动，请重新提交',
       message_en = 'the server was upgraded before the job finished; nothing was loaded, please resubmit'
 WHERE state IN ('queued', 'reading', 'validating', 'loading');

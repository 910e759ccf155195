-- 0030 vector tiles: announce every data-version bump so tile caches switch keys at once.
-- The tile server LISTENs on channel cim_data_version; payload '<source_table>:<version>'.
-- Notifications are delivered at commit, so a cache never sees a version before its data.

CREATE FUNCTION cim.notify_data_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cim_data_version', NEW.source_table || ':' || NEW.version);
    RETURN NULL;
END $$;

CREATE TRIGGER data_version_notify AFTER INSERT OR UPDATE ON cim.data_version
    FOR EACH ROW EXECUTE FUNCTION cim.notify_data_version();

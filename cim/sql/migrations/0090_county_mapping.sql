-- 0090 county mappings (ingest/mapping/county.py): the field and value mappings a county confirmed
-- for its deliveries (delivered field → target column; delivered value → dictionary code), kept
-- as versions. The newest version of a county is applied to that county's next delivery; older
-- versions stay for the record. Saving is audited (cim.audit_log, action ingest.mapping.save).

CREATE TABLE cim.county_mapping (
    county_code  varchar(12) NOT NULL CHECK (county_code ~ '^\d{6}$'),
    version      integer NOT NULL CHECK (version >= 1),
    mapping      jsonb NOT NULL CHECK (jsonb_typeof(mapping) = 'object'),
    source_job   text,             -- the upload job whose mapping was saved, when saved from a job
    note         text,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (county_code, version)
);

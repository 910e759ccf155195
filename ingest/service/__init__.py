"""The upload service beside the pipeline: uploads checked (:mod:`ingest.service.upload`) become
jobs (:mod:`ingest.service.jobs`, table ``cim.ingest_job``) that run :func:`ingest.pipeline.run`
in a child process. The pipeline knows nothing of jobs: it reports through its ``progress`` and
``on_commit`` callbacks, which the job turns into the job row's state."""

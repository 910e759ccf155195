"""Submissions of the upload API, without HTTP: accept an upload as a job, read it, confirm, cancel.

The HTTP layer streams and parses the multipart form; from there on the steps are here:
:func:`accept` saves the files in a staging folder under ``$CIM_HOME/uploads``, runs
:func:`ingest.service.upload.preflight` and checks the profile before a job row exists (a refused upload
writes nothing and leaves no folder), then creates the job (:func:`ingest.service.jobs.create`, audited)
with its background task (any server process runs it: :func:`ingest.service.jobs.run_task`).
Blocking functions run in the caller's worker thread (the API uses ``run_in_threadpool``);
:func:`job` reads on the API's asyncpg pool.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import asyncpg

from cim import auth, db
from cim.errors import InvalidInput, NotFound, UnreadableInput
from cim.settings import Settings
from ingest.mapping import county as county_mapping
from ingest.model import UserMapping
from ingest.service import jobs, upload

COUNTY = re.compile(r"^\d{6}$")
GROUPS_PAGE = 50                  # groups per page of GET /api/ingest/{job}/groups
MAX_GROUPS_PAGE = 500
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_JOB_SQL = ("SELECT id, county_code, state, progress, counts::text, findings::text, delivery_id, outcome, dry_run, "
            "message_zh, message_en, work_dir, created_at, finished_at FROM cim.ingest_job WHERE id = $1")


def check_county(county: str) -> str:
    """The county code of an upload (6 digits), or InvalidInput."""
    county = county.strip()
    if not COUNTY.match(county):
        raise InvalidInput("county 须为 6 位县级行政区代码", "county must be a 6-digit county code")
    return county


def save(files: Sequence[tuple[str, BinaryIO]], into: Path) -> list[str]:
    """Write uploaded files (name, readable file) into a folder under safe, distinct names."""
    names: list[str] = []
    for filename, fileobj in files:
        name = upload.safe_name(filename)
        if name.lower() in (n.lower() for n in names):
            raise UnreadableInput(f"重复的文件名：{name}", f"duplicate file name: {name}")
        fileobj.seek(0)
        with (into / name).open("wb") as out:
            shutil.copyfileobj(fileobj, out, 1 << 20)
        names.append(name)
    return names


def known_profile(profile: str) -> None:
    """InvalidInput unless ``profile`` names a delivery profile."""
    from ingest.mapping.profile import load_profiles

    if profile not in load_profiles():
        raise InvalidInput(f"未知的交付规范：{profile}", f"unknown delivery profile: {profile}")


def parse_mapping(text: str | bytes | dict | None) -> UserMapping | None:
    """The user's mapping from the form's ``mapping`` field or a JSON body
    (``{"fields": {source: column}, "values": {column: {value: code}}}``), or InvalidInput."""
    if text is None or text == "":
        return None
    try:
        data = json.loads(text) if isinstance(text, (str, bytes)) else text
    except ValueError as exc:
        raise InvalidInput("映射须为 JSON", "the mapping must be JSON") from exc
    if not isinstance(data, dict) or not all(isinstance(data.get(k, {}), dict) for k in ("fields", "values")) or \
            not all(isinstance(v, dict) for v in (data.get("values") or {}).values()):
        raise InvalidInput("映射须为 {fields: {交付字段: 目标字段}, values: {目标字段: {交付值: 代码}}}",
                           "the mapping must be {fields: {source: column}, values: {column: {value: code}}}")
    return county_mapping.check(UserMapping.from_dict(data, source="用户映射"))


def accept(settings: Settings, files: Sequence[tuple[str, BinaryIO]], *, county: str,
           profile: str | None, dry_run: bool, principal: auth.Principal, client_addr: str | None,
           mapping: UserMapping | None = None) -> str:
    """Check and store an upload (with the user's ``mapping``, if any), create its job and
    queue it; returns the job id.

    Nothing is written (no job row, no folder left behind) unless every check passes.
    """
    if not files:
        raise UnreadableInput("没有上传文件（字段 file）", "no file uploaded (field 'file')")
    root = jobs.uploads_dir(settings)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".upload-", dir=root))
    try:
        names = save(files, staging)
        upload.preflight([staging / n for n in names], settings.ingest)
        if profile is not None:
            known_profile(profile)
        jobs.write_mapping(staging, mapping)
        job_id = jobs.new_id()
        work_dir = root / job_id
        staging.rename(work_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        conn = db.connect(settings.db, application_name="cim-ingest-api")
        try:
            jobs.create(conn, job_id=job_id, county=county, profile=profile, dry_run=dry_run, files=names,
                        work_dir=work_dir, principal=principal, client_addr=client_addr)
        finally:
            conn.close()
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    return job_id


async def job(pool: asyncpg.Pool, job_id: str) -> dict:
    """The job row (the caller checks the principal may write its county), or NotFound."""
    row = await pool.fetchrow(_JOB_SQL, job_id) if _JOB_ID.match(job_id) else None
    if row is None:
        raise NotFound(f"没有入库任务 {job_id}", f"no ingest job {job_id}")
    return dict(row)


def status(job_row: dict, base_url: str) -> dict:
    """State, progress %, counts, delivery id, bilingual message and links to the reports written so far."""
    return {"job_id": job_row["id"], "state": job_row["state"], "progress": job_row["progress"],
            "county": job_row["county_code"], "dry_run": job_row["dry_run"], "outcome": job_row["outcome"],
            "counts": json.loads(job_row["counts"]), "findings": json.loads(job_row["findings"]),
            "delivery_id": job_row["delivery_id"], "message_zh": job_row["message_zh"],
            "message_en": job_row["message_en"], "created_at": job_row["created_at"],
            "finished_at": job_row["finished_at"],
            "links": {k: f"{base_url}/report.{k}" for k, name in jobs.REPORT_FILES.items()
                      if (Path(job_row["work_dir"]) / name).is_file()}}


def report(job_row: dict, fmt: str) -> Path:
    """The job's report file in format ``fmt`` (json, html, xlsx, csv), or NotFound."""
    if fmt not in jobs.REPORT_FILES:
        raise NotFound(f"没有 {fmt} 格式的报告", f"no report in format {fmt}")
    path = Path(job_row["work_dir"]) / jobs.REPORT_FILES[fmt]
    if not path.is_file():
        raise NotFound("报告尚未生成（任务未完成质检）", "the report is not ready (validation has not finished)")
    return path


def groups(job_row: dict, offset: int = 0, limit: int = GROUPS_PAGE) -> dict:
    """A page of the job's grouped findings with the report's summary (verdict, what to fix first,
    layers and their mapping), biggest groups first (:func:`ingest.pipeline.read_report_groups`), or
    NotFound before validation finished."""
    from ingest.pipeline import read_report_groups

    if offset < 0 or not 1 <= limit <= MAX_GROUPS_PAGE:
        raise InvalidInput(f"offset 须 ≥ 0，limit 须在 1–{MAX_GROUPS_PAGE} 之间",
                           f"offset must be ≥ 0 and limit within 1–{MAX_GROUPS_PAGE}")
    path = Path(job_row["work_dir"]) / jobs.GROUPS_FILE
    if not path.is_file():
        raise NotFound("报告尚未生成（任务未完成质检）", "the report is not ready (validation has not finished)")
    return read_report_groups(path, offset, limit)


def confirm(settings: Settings, job_id: str, principal: auth.Principal,
            client_addr: str | None) -> None:
    """Turn a clean dry run into a load (audited) and queue it."""
    conn = db.connect(settings.db)
    try:
        jobs.confirm(conn, job_id, principal, client_addr)
    finally:
        conn.close()


def recheck(settings: Settings, job_id: str, mapping: UserMapping | None,
            principal: auth.Principal, client_addr: str | None) -> None:
    """Check a finished job's files again with the user's mapping (audited) and queue it."""
    conn = db.connect(settings.db)
    try:
        jobs.recheck(conn, job_id, mapping or UserMapping(), principal, client_addr)
    finally:
        conn.close()


def cancel(settings: Settings, job_id: str, principal: auth.Principal,
           client_addr: str | None) -> str:
    """Cancel a job (audited): ``cancelled`` at once, or ``cancelling`` while it runs."""
    conn = db.connect(settings.db)
    try:
        return jobs.cancel(conn, job_id, principal, client_addr)
    finally:
        conn.close()

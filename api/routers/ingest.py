"""Upload API (docs/api-contract.md "Ingest"): upload → background job → report → confirm.

The upload is streamed to disk with a size limit (``CIM_INGEST_MAX_UPLOAD_MB``): a declared
``Content-Length`` over the limit is refused before the body is read, a chunked body as soon as
it passes the limit. Files then pass :func:`ingest.service.upload.preflight` (file names, type sniffing,
zip bombs and path traversal, complete and untruncated shapefile sets, known CRS) before a job
row exists, so a refused upload writes nothing. Jobs run in :class:`ingest.service.jobs.Runner`.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from api import deps
from cim import db
from cim.auth import Action, Principal
from cim.errors import InvalidInput, NotFound, PayloadTooLarge, UnreadableInput
from cim.settings import Settings
from ingest.service import jobs, upload

router = APIRouter(prefix="/api/ingest", tags=["ingest / 数据入库"])

_COUNTY = re.compile(r"^\d{6}$")
_MEDIA = {"json": "application/json", "html": "text/html; charset=utf-8",
          "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def _too_large(limit_mb: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"上传超过 {limit_mb} MB 上限", f"upload exceeds the {limit_mb} MB limit")


async def _limited(request: Request, limit: int, limit_mb: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise _too_large(limit_mb)
        yield chunk


async def _parse_form(request: Request, settings: Settings):
    limit_mb = settings.ingest.max_upload_mb
    limit = limit_mb * (1 << 20)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit_mb)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UnreadableInput("请以 multipart/form-data 上传文件", "upload the files as multipart/form-data")
    parser = MultiPartParser(request.headers, _limited(request, limit, limit_mb), max_files=64, max_fields=16)
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise UnreadableInput("上传的表单无法解析", f"the multipart form cannot be parsed: {exc.message}") from exc


def _save(files: list[UploadFile], into: Path) -> list[str]:
    names: list[str] = []
    for f in files:
        name = upload.safe_name(f.filename or "")
        if name.lower() in (n.lower() for n in names):
            raise UnreadableInput(f"重复的文件名：{name}", f"duplicate file name: {name}")
        f.file.seek(0)
        with (into / name).open("wb") as out:
            shutil.copyfileobj(f.file, out, 1 << 20)
        names.append(name)
    return names


def _flag(value: object) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


@router.post("", status_code=202, summary="上传成果 / upload a delivery")
async def submit(request: Request, who: Principal = Depends(deps.principal)) -> dict:
    """Multipart: ``file`` (one or more), ``county``, ``profile`` (optional), ``dry_run``.

    Returns ``202 {job_id, status_url}``; needs an uploader token for that county (or admin).
    """
    deps.check(request, who, Action.write, county=min(who.counties) if who.counties else None)
    settings: Settings = deps.settings(request)
    form = await _parse_form(request, settings)
    try:
        county = str(form.get("county") or "").strip()
        if not _COUNTY.match(county):
            raise InvalidInput("county 须为 6 位县级行政区代码", "county must be a 6-digit county code")
        deps.check(request, who, Action.write, county=county)
        files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
        if not files:
            raise UnreadableInput("没有上传文件（字段 file）", "no file uploaded (field 'file')")
        profile = str(form.get("profile") or "").strip() or None
        return await _accept(request, who, settings, files, county, profile, _flag(form.get("dry_run")))
    finally:
        await form.close()


async def _accept(request: Request, who: Principal, settings: Settings, files: list[UploadFile], county: str,
                  profile: str | None, dry_run: bool) -> dict:
    root = jobs.uploads_dir(settings)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".upload-", dir=root))
    try:
        names = await run_in_threadpool(_save, files, staging)
        await run_in_threadpool(upload.preflight, [staging / n for n in names], settings.ingest)
        if profile is not None:
            await run_in_threadpool(_known_profile, profile)
        job_id = jobs.new_id()
        work_dir = root / job_id
        staging.rename(work_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        await run_in_threadpool(_create, settings, job_id, county, profile, dry_run, names, work_dir, who,
                                deps.client_addr(request))
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    request.app.state.ingest_runner.submit(job_id)
    return {"job_id": job_id, "status_url": f"/api/ingest/{job_id}"}


def _known_profile(profile: str) -> None:
    from ingest.mapping.profile import load_profiles

    if profile not in load_profiles():
        raise InvalidInput(f"未知的交付规范：{profile}", f"unknown delivery profile: {profile}")


def _create(settings: Settings, job_id: str, county: str, profile: str | None, dry_run: bool, names: list[str],
            work_dir: Path, who: Principal, addr: str | None) -> None:
    conn = db.connect(settings.db, application_name="cim-ingest-api")
    try:
        jobs.create(conn, job_id=job_id, county=county, profile=profile, dry_run=dry_run, files=names,
                    work_dir=work_dir, principal=who, client_addr=addr)
    finally:
        conn.close()


@router.get("/profiles", summary="交付规范 / delivery profiles")
async def profiles(request: Request, who: Principal = Depends(deps.require(Action.read))) -> list[dict]:
    """Every delivery spec profile: id and titles."""
    from ingest.mapping.profile import load_profiles

    found = await run_in_threadpool(load_profiles)
    return [{"id": p.id, "title_zh": p.title_zh, "title_en": p.title_en} for p in found.values()]


async def _job(request: Request, job_id: str, who: Principal) -> dict:
    """The job row; the caller must be allowed to write its county (uploader of it, or admin)."""
    if not re.fullmatch(r"[0-9a-f]{32}", job_id):
        raise NotFound(f"没有入库任务 {job_id}", f"no ingest job {job_id}")
    async with request.app.state.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT id, county_code, state, progress, counts::text, findings::text, delivery_id, "
                                  "outcome, dry_run, message_zh, message_en, work_dir, created_at, finished_at "
                                  "FROM cim.ingest_job WHERE id = $1", job_id)
    if row is None:
        raise NotFound(f"没有入库任务 {job_id}", f"no ingest job {job_id}")
    deps.check(request, who, Action.write, county=row["county_code"])
    return dict(row)


@router.get("/{job_id}", summary="入库任务状态 / job status")
async def status(job_id: str, request: Request, who: Principal = Depends(deps.principal)) -> dict:
    """State, progress %, counts, delivery id, bilingual message and report links."""
    import json

    job = await _job(request, job_id, who)
    base = f"/api/ingest/{job_id}"
    return {"job_id": job_id, "state": job["state"], "progress": job["progress"], "county": job["county_code"],
            "dry_run": job["dry_run"], "outcome": job["outcome"], "counts": json.loads(job["counts"]),
            "findings": json.loads(job["findings"]), "delivery_id": job["delivery_id"],
            "message_zh": job["message_zh"], "message_en": job["message_en"],
            "created_at": job["created_at"], "finished_at": job["finished_at"],
            "links": {k: f"{base}/report.{k}" for k, name in jobs.REPORT_FILES.items()
                      if (Path(job["work_dir"]) / name).is_file()}}


@router.get("/{job_id}/report.{fmt}", summary="质检报告 / validation report")
async def report(job_id: str, fmt: str, request: Request, who: Principal = Depends(deps.principal)) -> FileResponse:
    """The report as JSON, HTML or XLSX (once validation finished)."""
    if fmt not in jobs.REPORT_FILES:
        raise NotFound(f"没有 {fmt} 格式的报告", f"no report in format {fmt}")
    job = await _job(request, job_id, who)
    path = Path(job["work_dir"]) / jobs.REPORT_FILES[fmt]
    if not path.is_file():
        raise NotFound("报告尚未生成（任务未完成质检）", "the report is not ready (validation has not finished)")
    return FileResponse(path, media_type=_MEDIA[fmt], filename=f"report-{job_id[:8]}.{fmt}")


@router.post("/{job_id}/confirm", status_code=202, summary="确认试运行入库 / confirm a dry run")
async def confirm(job_id: str, request: Request, who: Principal = Depends(deps.principal)) -> dict:
    """Load a clean dry run (re-read and re-validated from the stored files)."""
    await _job(request, job_id, who)
    conn = await run_in_threadpool(db.connect, deps.settings(request).db)
    try:
        await run_in_threadpool(jobs.confirm, conn, job_id, who, deps.client_addr(request))
    finally:
        conn.close()
    request.app.state.ingest_runner.submit(job_id, confirm=True)
    return {"job_id": job_id, "status_url": f"/api/ingest/{job_id}"}


@router.post("/{job_id}/cancel", summary="取消入库任务 / cancel a job")
async def cancel(job_id: str, request: Request, who: Principal = Depends(deps.principal)) -> dict:
    """Cancel a queued, running or awaiting job; a running load rolls back."""
    await _job(request, job_id, who)
    conn = await run_in_threadpool(db.connect, deps.settings(request).db)
    try:
        state = await run_in_threadpool(request.app.state.ingest_runner.cancel, conn, job_id, who,
                                        deps.client_addr(request))
    finally:
        conn.close()
    return {"job_id": job_id, "state": state}


async def _start(app: FastAPI) -> None:
    """Fail jobs a previous process left running, then start the worker."""
    conn = await run_in_threadpool(db.connect, app.state.settings.db)
    try:
        await run_in_threadpool(jobs.fail_unfinished, conn)
    finally:
        conn.close()
    app.state.ingest_runner = jobs.Runner(app.state.settings)


async def _stop(app: FastAPI) -> None:
    runner = getattr(app.state, "ingest_runner", None)
    if runner is not None:
        await asyncio.get_running_loop().run_in_executor(None, runner.shutdown)


def register(app: FastAPI) -> None:
    """Mount the router and the worker's start/stop hooks."""
    app.include_router(router)
    app.state.startup_hooks.append(_start)
    app.state.shutdown_hooks.append(_stop)

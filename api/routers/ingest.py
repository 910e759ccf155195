"""Upload API (docs/api-contract.md "Ingest"): upload → background job → report → confirm.

The upload is streamed to disk with a size limit (``CIM_INGEST_MAX_UPLOAD_MB``): a declared
``Content-Length`` over the limit is refused before the body is read, a chunked body as soon as
it passes the limit. :mod:`ingest.service.submission` then takes over: files pass
:func:`ingest.service.upload.preflight` (file names, type sniffing, zip bombs and path traversal, complete
and untruncated shapefile sets, known CRS) before a job row exists, so a refused upload writes
nothing. Jobs are background tasks (``ingest.job``) that any server process may run
(:func:`ingest.service.jobs.run_task`, registered here).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from api import deps, tasks
from cim.auth import Action, Principal
from cim.errors import NotFound, PayloadTooLarge, UnreadableInput
from cim.settings import Settings
from ingest.service import jobs, submission

router = APIRouter(prefix="/api/ingest", tags=["ingest / 数据入库"])

_MEDIA = {"json": "application/json", "html": "text/html; charset=utf-8",
          "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "csv": "text/csv; charset=utf-8"}


def _too_large(limit_mb: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"上传超过 {limit_mb} MB 上限", f"upload exceeds the {limit_mb} MB limit")


async def _limited(request: Request, limit: int, limit_mb: int) -> AsyncGenerator[bytes, None]:
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
        county = submission.check_county(str(form.get("county") or ""))
        deps.check(request, who, Action.write, county=county)
        files = [(f.filename or "", f.file) for f in form.getlist("file") if isinstance(f, UploadFile)]
        job_id = await run_in_threadpool(
            submission.accept, settings, files, county=county,
            profile=str(form.get("profile") or "").strip() or None, dry_run=_flag(form.get("dry_run")),
            principal=who, client_addr=deps.client_addr(request),
            mapping=submission.parse_mapping(str(form.get("mapping") or "")))
    finally:
        await form.close()
    return {"job_id": job_id, "status_url": f"/api/ingest/{job_id}"}


@router.get("/profiles", summary="交付规范 / delivery profiles")
async def profiles(request: Request, who: Principal = Depends(deps.require(Action.read))) -> list[dict]:
    """Every delivery spec profile: id and titles."""
    from ingest.mapping.profile import load_profiles

    found = await run_in_threadpool(load_profiles)
    return [{"id": p.id, "title_zh": p.title_zh, "title_en": p.title_en} for p in found.values()]


async def _job(request: Request, job_id: str, who: Principal) -> dict:
    """The job row; the caller must be allowed to write its county (uploader of it, or admin)."""
    job = await submission.job(deps.pool(request), job_id)
    deps.check(request, who, Action.write, county=job["county_code"])
    return job


@router.get("/{job_id}", summary="入库任务状态 / job status")
async def status(job_id: str, request: Request, who: Principal = Depends(deps.principal)) -> dict:
    """State, progress %, counts, delivery id, bilingual message and report links."""
    return submission.status(await _job(request, job_id, who), f"/api/ingest/{job_id}")


@router.get("/{job_id}/report.{fmt}", summary="质检报告 / validation report")
async def report(job_id: str, fmt: str, request: Request, who: Principal = Depends(deps.principal)) -> FileResponse:
    """The report as JSON, HTML, XLSX or CSV (once validation finished)."""
    if fmt not in _MEDIA:
        raise NotFound(f"没有 {fmt} 格式的报告", f"no report in format {fmt}")
    path = submission.report(await _job(request, job_id, who), fmt)
    return FileResponse(path, media_type=_MEDIA[fmt], filename=f"report-{job_id[:8]}.{fmt}")


@router.get("/{job_id}/groups", summary="质检问题分组 / grouped findings")
async def groups(job_id: str, request: Request, who: Principal = Depends(deps.principal),
                 offset: Annotated[int, Query(ge=0, le=100_000_000, description="跳过的分组数")] = 0,
                 limit: Annotated[int, Query(ge=1, le=submission.MAX_GROUPS_PAGE, description="每页分组数")]
                 = submission.GROUPS_PAGE) -> dict:
    """The report's summary (verdict, what to fix first, layers and their mapping) and a page of
    its findings grouped by rule × layer × field × value (count, first rows, extent), biggest first."""
    job = await _job(request, job_id, who)
    return await run_in_threadpool(submission.groups, job, offset, limit)


@router.post("/{job_id}/confirm", status_code=202, summary="确认试运行入库 / confirm a dry run")
async def confirm(job_id: str, request: Request, who: Principal = Depends(deps.principal)) -> dict:
    """Load a clean dry run (re-read and re-validated from the stored files)."""
    await _job(request, job_id, who)
    await run_in_threadpool(submission.confirm, deps.settings(request), job_id, who,
                            deps.client_addr(request))
    return {"job_id": job_id, "status_url": f"/api/ingest/{job_id}"}


@router.post("/{job_id}/recheck", status_code=202, summary="按映射重新质检 / re-check with a mapping")
async def recheck(job_id: str, request: Request, who: Principal = Depends(deps.principal)) -> dict:
    """Check a finished job's stored files again as a dry run with the user's mapping (JSON body
    ``{"fields": {source: column}, "values": {column: {value: code}}}``)."""
    await _job(request, job_id, who)
    body = await request.body()
    if len(body) > 1 << 20:
        raise PayloadTooLarge("映射超过 1 MB", "the mapping is larger than 1 MB")
    mapping = submission.parse_mapping(body)
    await run_in_threadpool(submission.recheck, deps.settings(request), job_id, mapping, who,
                            deps.client_addr(request))
    return {"job_id": job_id, "status_url": f"/api/ingest/{job_id}"}


@router.post("/{job_id}/cancel", summary="取消入库任务 / cancel a job")
async def cancel(job_id: str, request: Request, who: Principal = Depends(deps.principal)) -> dict:
    """Cancel a queued, running or awaiting job; a running load rolls back."""
    await _job(request, job_id, who)
    state = await run_in_threadpool(submission.cancel, deps.settings(request),
                                    job_id, who, deps.client_addr(request))
    return {"job_id": job_id, "state": state}


def register(app: FastAPI) -> None:
    """Mount the router, run upload jobs in this process's task worker, end their children at stop."""
    app.include_router(router)
    children = jobs.Children()
    tasks.handle(app, jobs.TASK_KIND, lambda ctx: jobs.run_task(app.state.settings, ctx, children))

    async def stop(app: FastAPI) -> None:
        await asyncio.get_running_loop().run_in_executor(None, children.stop)

    app.state.shutdown_hooks.insert(0, stop)   # before the task worker waits for its handlers

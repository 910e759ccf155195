"""The hazard ledger over HTTP (docs/api-contract.md "Hazard ledger", docs/hazards.md).

Every route parses its input, makes one call into :class:`cimplus.hazards.service.HazardService`
(``app.state.hazards``) and answers. Access: reads need ``read``; writes need a role that may
do the action somewhere (``require_role``), and the service checks the entry's county
(:func:`cim.auth.authorize`). The service also runs the ``hazards.scan`` background tasks: the
county a delivery changes is rescanned by this server's worker.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from api import deps, tasks
from cim.auth import Action, Principal
from cim.errors import InvalidInput, PayloadTooLarge, UnreadableInput
from cimplus.hazards.service import TASK_KIND, HazardService

router = APIRouter(prefix="/api/hazards", tags=["hazards / 风险隐患台账"])
READ = Depends(deps.require(Action.read))
ID = Path(..., ge=1, le=2 ** 63 - 1, description="条目 id / entry id")
GEOJSON = "application/geo+json"


def _svc(request: Request) -> HazardService:
    return request.app.state.hazards


class Filter:
    """Filters shared by the list, statistics and exports (comma lists allowed)."""

    def __init__(self,
                 county: str | None = Query(None, max_length=200, description="县级代码（市 xxxx00、省 xx0000 含下级），逗号分隔"),
                 status: str | None = Query(None, max_length=200, description="状态代码，或 open（全部未销号）"),
                 rule: str | None = Query(None, max_length=200, description="规则编号 G01…B02"),
                 facility_type: str | None = Query(None, max_length=200),
                 risk_level: str | None = Query(None, max_length=20, description="1–4"),
                 source: str | None = Query(None, max_length=200),
                 supervision: str | None = Query(None, max_length=100),
                 overdue: str | None = Query(None, pattern="^(true|false|1|0)$", description="逾期"),
                 bbox: str | None = Query(None, max_length=200, description="minlon,minlat,maxlon,maxlat")) -> None:
        self.params = {"county": county, "status": status, "rule": rule, "facility_type": facility_type,
                       "risk_level": risk_level, "source": source, "supervision": supervision, "overdue": overdue,
                       "bbox": bbox}


class Registration(BaseModel):
    """Manual registration (巡查, 12345, 上级交办 …)."""

    model_config = ConfigDict(extra="forbid")

    county: str = Field(..., description="6 位县级代码")
    source: str = Field("patrol", description="survey / patrol / iot / health_check / hotline / assigned")
    facility_type: str
    title: str
    risk_level: int
    geometry: dict[str, Any] = Field(..., description="GeoJSON 几何（CGCS2000 经纬度）")
    hazard_class: str | None = None
    description: str | None = None
    location: str | None = None
    facility_refs: list[dict[str, Any]] | None = Field(None, description="[{table, id}] 关联要素")
    responsible_unit: str | None = None
    responsible_person: str | None = None
    contact: str | None = None
    measures: str | None = None
    interim_controls: str | None = None
    budget: float | None = None
    deadline: str | None = Field(None, description="YYYY-MM-DD")
    reviewer: str | None = None


class Transition(BaseModel):
    """One workflow action on an entry."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(..., description="register / dismiss / reopen / start / progress / submit / reject / close / "
                                         "update / regrade / supervise")
    version: int = Field(..., description="the entry's version as read (409 when it changed since)")
    comment: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)


class ScanRequest(BaseModel):
    """A scan to queue."""

    model_config = ConfigDict(extra="forbid")

    county: str
    rules: list[str] = Field(default_factory=list, description="rule ids (default: every enabled rule)")
    incremental: bool = False


@router.get("/vocabulary", summary="台账代码与流程 / codes, labels, workflow matrix and rules")
async def vocabulary(request: Request, who: Principal = READ) -> dict:
    """Status, source, facility-type, class, risk-level (colours) and supervision codes with
    labels, the workflow actions (from, to, permission, fields) and the rules."""
    return await run_in_threadpool(_svc(request).vocabulary)


@router.get("", summary="隐患台账列表 / ledger entries (GeoJSON, paged)", response_class=JSONResponse)
async def list_entries(request: Request, f: Filter = Depends(), limit: int = Query(100, ge=1, le=10000),
                       cursor: int | None = Query(None, ge=1, le=2 ** 63 - 1, description="from the next link"),
                       who: Principal = READ) -> Response:
    """Entries newest first as a GeoJSON FeatureCollection (geometry: the map marker;
    properties: codes, Chinese labels, risk colour, 逾期, measured vs required); ``links`` has
    ``next`` while more entries match."""
    body = await run_in_threadpool(_svc(request).list, f.params, limit=limit, cursor=cursor)
    return JSONResponse(body, media_type=GEOJSON)


@router.get("/stats", summary="统计 / counts by status × facility type × area, overdue")
async def stats(request: Request, f: Filter = Depends(), who: Principal = READ) -> dict:
    """Totals and counts by status, facility type, risk level and admin area, with 逾期."""
    return await run_in_threadpool(_svc(request).stats, f.params)


def _download(name: str) -> str:
    return f"attachment; filename=\"hazards{name[-5:]}\"; filename*=UTF-8''{quote(name)}"


@router.get("/export.xlsx", summary="导出台账 xlsx / ledger workbook", response_class=Response)
async def export_xlsx(request: Request, f: Filter = Depends(), who: Principal = READ) -> Response:
    """The ledger in 台账 layout: a summary sheet and one sheet per facility type."""
    data = await run_in_threadpool(_svc(request).export_xlsx, f.params)
    return Response(data, media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": _download("风险隐患台账.xlsx")})


@router.get("/export.html", summary="打印版台账 / printable ledger", response_class=HTMLResponse)
async def export_html(request: Request, f: Filter = Depends(), who: Principal = READ) -> HTMLResponse:
    """The ledger as a printable page (A4 landscape)."""
    return HTMLResponse(await run_in_threadpool(_svc(request).export_html, f.params))


@router.post("", status_code=201, summary="登记隐患 / register a hazard")
async def register_hazard(request: Request, body: Registration = Body(...),
                   who: Principal = Depends(deps.require_role(Action.report))) -> dict:
    """A hazard found by people, registered (已登记) in a county the caller may report in."""
    return await run_in_threadpool(_svc(request).register, who, body.model_dump(exclude_unset=True),
                                   deps.client_addr(request))


@router.post("/scan", status_code=202, summary="扫描 / queue a scan of a county")
async def queue_scan(request: Request, body: ScanRequest = Body(...),
                     who: Principal = Depends(deps.require_role(Action.accept))) -> dict:
    """Queue a background scan (supervisors of the county, admins); follow it at ``status_url``."""
    return await run_in_threadpool(_svc(request).queue_scan, who, body.model_dump(exclude_unset=True),
                                   deps.client_addr(request))


@router.get("/{hazard_id}", summary="隐患条目 / one entry with events, attachments, evidence")
async def get_entry(request: Request, hazard_id: int = ID, who: Principal = READ) -> dict:
    """Every field, geometry and marker, facility references, evidence (measured vs required,
    clause), the event timeline, attachments, linked entries and the caller's allowed actions."""
    return await run_in_threadpool(_svc(request).get, hazard_id, who)


@router.post("/{hazard_id}/transition", summary="流转 / apply a workflow action",
             responses={409: {"description": "stale version or action not allowed in the entry's state; "
                                             "`detail.current` holds the entry as it is"}})
async def transition(request: Request, hazard_id: int = ID, body: Transition = Body(...),
                     who: Principal = Depends(deps.require_role(Action.report, Action.accept, Action.oversee))) -> dict:
    """One action of the workflow matrix with the version the caller saw."""
    return await run_in_threadpool(_svc(request).transition, who, hazard_id, body.model_dump(),
                                   deps.client_addr(request))


async def _form(request: Request, limit: int):
    declared = request.headers.get("content-length")
    too_large = PayloadTooLarge(f"附件超过 {limit >> 20} MB 上限", f"attachment exceeds the {limit >> 20} MB limit")
    if declared and declared.isdigit() and int(declared) > limit + (64 << 10):
        raise too_large
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UnreadableInput("请以 multipart/form-data 上传附件", "upload the attachment as multipart/form-data")

    async def limited():
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit + (64 << 10):
                raise too_large
            yield chunk

    try:
        return await MultiPartParser(request.headers, limited(), max_files=1, max_fields=4).parse()
    except MultiPartException as exc:
        raise UnreadableInput("上传的表单无法解析", f"the multipart form cannot be parsed: {exc.message}") from exc


@router.post("/{hazard_id}/attachments", status_code=201, summary="上传附件 / attach a photo or report")
async def add_attachment(request: Request, hazard_id: int = ID,
                         who: Principal = Depends(deps.require_role(Action.report))) -> dict:
    """Multipart ``file`` (JPEG, PNG, WebP or PDF, sniffed from its bytes), ``kind``
    (before / after / report / other) and ``caption``."""
    svc = _svc(request)
    form = await _form(request, int(svc.settings.hazards.attachment_max_mb * (1 << 20)))
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("没有上传文件（字段 file）", "no file uploaded (field 'file')")
        kind, caption = form.get("kind") or "other", form.get("caption")
        if not isinstance(kind, str) or (caption is not None and not isinstance(caption, str)):
            raise InvalidInput("kind、caption 须为文本字段", "kind and caption must be text fields")
        upload.file.seek(0)
        return await run_in_threadpool(svc.add_attachment, who, hazard_id, upload.file, kind=kind,
                                       file_name=upload.filename, caption=caption, client_addr=deps.client_addr(request))
    finally:
        await form.close()


@router.get("/{hazard_id}/attachments/{attachment_id}", summary="下载附件 / an attachment's file",
            response_class=FileResponse)
async def get_attachment(request: Request, hazard_id: int = ID,
                         attachment_id: int = Path(..., ge=1, le=2 ** 63 - 1), who: Principal = READ) -> FileResponse:
    """The stored bytes with their sniffed media type."""
    path, media, name = await run_in_threadpool(_svc(request).attachment, hazard_id, attachment_id)
    return FileResponse(path, media_type=media, headers={
        "Content-Disposition": f"inline; filename=\"attachment{path.suffix}\"; filename*=UTF-8''{quote(name)}",
        "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox",
        "Cache-Control": "private, max-age=86400, immutable"})


def register(app: FastAPI) -> None:
    """Mount this router; the service, its ``hazards.scan`` handler, and the rescan of a county
    whenever a delivery changes it."""
    service = HazardService(app.state.settings)
    app.state.hazards = service
    tasks.handle(app, TASK_KIND, service.scan_task)
    tasks.follow_county_changes(app, TASK_KIND)

    async def stop(app: FastAPI) -> None:
        await run_in_threadpool(service.close)

    app.state.shutdown_hooks.append(stop)
    app.include_router(router)

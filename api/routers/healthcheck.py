"""城市体检 over HTTP (docs/api-contract.md "Health check"): the indicator catalogue, runs as
background tasks, values with last year's, comparisons, choropleth classes, the features behind a
value, reports and the inputs. Every route parses, makes one call into
:class:`cimplus.healthcheck.service.HealthCheck` and answers; writes are authenticated and audited.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api import deps, tasks
from cim import db
from cim.auth import Action, Principal
from cim.tasks import TaskContext
from cimplus.healthcheck.service import TASK_KIND, HealthCheck, with_connection

router = APIRouter(prefix="/api/healthcheck", tags=["healthcheck / 城市体检"])
READ = Depends(deps.require(Action.read))
Level = Literal["county", "street", "community"]
_INDICATOR = r"^[a-z][a-z0-9_]*$"
_AREA = r"^\d{6,12}$"
_MEDIA = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
          "html": "text/html; charset=utf-8"}


class RunRequest(BaseModel):
    """What to check: one county (default every county loaded), a year (default this year), levels."""

    model_config = ConfigDict(extra="forbid")

    county: str | None = Field(None, pattern=r"^\d{6}$", description="县级行政区代码 / county code")
    year: int | None = Field(None, ge=1949, le=2100, description="体检年份 / year of the check")
    levels: list[Level] | None = Field(None, min_length=1, description="county, street, community (default all)")


def _hc(request: Request) -> HealthCheck:
    return request.app.state.healthcheck


def _read(request: Request, fn, *args, **kwargs):
    """``fn(cursor, …)`` in a worker thread on a connection of its own."""
    return run_in_threadpool(db.with_cursor, deps.settings(request).db, fn, *args, **kwargs)


def _conn(request: Request, fn, *args, **kwargs):
    """``fn(connection, …)`` in a worker thread on a connection of its own."""
    return run_in_threadpool(with_connection, deps.settings(request).db, fn, *args, **kwargs)


@router.get("/indicators", summary="体检指标目录 / indicator catalogue")
async def indicators(request: Request, who: Principal = READ) -> list[dict]:
    """Every indicator: id, names, 体检 level, dimension, unit, direction, threshold and its source,
    definition, required layers and inputs, parameters, formula (SQL template), the layer behind a count."""
    return _hc(request).indicators()


@router.post("/runs", status_code=202, summary="发起体检运行（后台任务）/ start a run (background task)")
async def start_run(request: Request, body: RunRequest, who: Principal = Depends(deps.principal)) -> JSONResponse:
    """Queue a run; answer 202 with the task. ``GET /api/tasks/{task_id}`` follows it; its message
    and, when done, its result carry ``run_id`` (also ``GET /api/healthcheck/runs?task_id=``)."""
    deps.check(request, who, Action.write if body.county else Action.admin, body.county)
    task_id = await run_in_threadpool(db.with_cursor, deps.settings(request).db, _hc(request).request_run,
                                      body.model_dump(), principal=who, client_addr=deps.client_addr(request))
    return JSONResponse({"task_id": task_id, "state": "queued", "task": f"/api/tasks/{task_id}",
                         "runs": f"/api/healthcheck/runs?task_id={task_id}"}, status_code=202,
                        headers={"Location": f"/api/tasks/{task_id}"})


@router.get("/runs", summary="体检运行列表 / runs, newest first")
async def list_runs(request: Request, county: str | None = Query(None, pattern=r"^\d{6}$"),
                    year: int | None = Query(None, ge=1949, le=2100),
                    state: Literal["running", "done", "failed"] | None = None,
                    task_id: int | None = Query(None, ge=1), limit: int = Query(50, ge=1, le=500),
                    who: Principal = READ) -> list[dict]:
    """Runs with scope, state, summary, data versions and inputs used."""
    return await _read(request, _hc(request).runs, county=county, year=year, state=state,
                                   task_id=task_id, limit=limit)


@router.get("/runs/{run_id}", summary="体检结果 / a run and its values")
async def get_run(request: Request, run_id: int, level: Level | None = None,
                  indicator: str | None = Query(None, pattern=_INDICATOR), area: str | None = Query(None, pattern=_AREA),
                  previous: bool = Query(True, description="add last year's value to each value"),
                  who: Principal = READ) -> dict:
    """The run (definitions and classes it used) and its values, filtered by level, indicator and
    area; each value carries ``previous`` (the latest earlier year's run) when there is one."""
    return await _read(request, _hc(request).values, run_id, level=level,
                                   indicator=indicator, area=area, previous=previous)


@router.get("/runs/{run_id}/compare", summary="与往年对比 / this run against an earlier one")
async def compare(request: Request, run_id: int, other: int | None = Query(None, alias="with", ge=1),
                  level: Level | None = None, indicator: str | None = Query(None, pattern=_INDICATOR),
                  area: str | None = Query(None, pattern=_AREA), who: Principal = READ) -> dict:
    """Per indicator and area: value, previous value, change, change in %, trend (improved /
    worsened by the indicator's direction, unchanged, new, not_comparable)."""
    return await _read(request, _hc(request).compare, run_id, other, level=level,
                                   indicator=indicator, area=area)


@router.get("/runs/{run_id}/classes", summary="分级设色 / choropleth classes")
async def classes(request: Request, run_id: int, indicator: str | None = Query(None, pattern=_INDICATOR),
                  level: Level | None = None, who: Principal = READ) -> dict:
    """indicator → level → {classes: [{no, min, max, pass, color, label_zh, label_en}], threshold, op}."""
    return await _read(request, _hc(request).classes, run_id, indicator, level)


@router.get("/runs/{run_id}/features", summary="指标对应的要素 / the features behind a value")
async def features(request: Request, run_id: int, indicator: str = Query(..., pattern=_INDICATOR),
                   area: str = Query(..., pattern=_AREA), limit: int = Query(2000, ge=1, le=5000),
                   geometry: bool = Query(True, description="include the GeoJSON features"),
                   who: Principal = READ) -> dict:
    """The buildings, pipes or lights an indicator counted in an area (today's data): ``layer``,
    ``ids`` (the vector-tile feature ids of that layer), ``features`` (GeoJSON), ``cql2`` (the
    attribute filter on ``/ogc/collections/{layer}/items``), ``data_changed`` since the run."""
    return await _conn(request, _hc(request).features, run_id, indicator, area,
                                   limit=limit, geometry=geometry)


@router.get("/runs/{run_id}/report.{fmt}", summary="体检报告 / report (xlsx or html)")
async def report(request: Request, run_id: int, fmt: Literal["xlsx", "html"], who: Principal = READ) -> Response:
    """The Excel workbook (a sheet per level, failing cells marked) or the printable HTML page
    (maps of failing indicators)."""
    body = await _conn(request, _hc(request).report_bytes, run_id, fmt)
    name = quote(f"体检报告-{run_id}.{fmt}")
    disposition = "inline" if fmt == "html" else "attachment"
    return Response(body, media_type=_MEDIA[fmt],
                    headers={"Content-Disposition": f"{disposition}; filename=\"report-{run_id}.{fmt}\"; "
                                                    f"filename*=UTF-8''{name}"})


@router.get("/inputs", summary="输入数据 / input uploads")
async def list_inputs(request: Request, kind: Literal["population", "builtup"] | None = None,
                      who: Principal = READ) -> list[dict]:
    """Population and built-up area uploads, newest first."""
    return await _read(request, _hc(request).inputs, kind)


@router.post("/inputs", status_code=201, summary="上传输入数据 / upload an input")
async def upload_input(request: Request, file: UploadFile = File(..., description="常住人口 .xlsx/.csv or 建成区 "
                                                                                ".geojson/.gpkg/.zip"),
                       kind: Literal["population", "builtup"] | None = Form(None),
                       year: int | None = Form(None, ge=1949, le=2100), county: str | None = Form(None, pattern=r"^\d{6}$"),
                       who: Principal = Depends(deps.principal)) -> dict[str, Any]:
    """Load resident population per admin area or a county's built-up area (admin only; audited).
    A file with bad rows is refused whole (400, every problem listed by row and column)."""
    deps.check(request, who, Action.admin)
    loaded = await run_in_threadpool(_hc(request).receive_input, deps.settings(request).db, file.file, file.filename,
                                     principal=who, kind=kind, year=year, county=county,
                                     client_addr=deps.client_addr(request))
    return loaded.to_dict()


def register(app: FastAPI) -> None:
    """Mount the router, build the service, run ``healthcheck.run`` tasks in the worker and re-check
    a county after its data changes (when it has been checked before)."""
    app.state.healthcheck = HealthCheck(app.state.catalog)
    settings = app.state.settings

    def run_task(ctx: TaskContext) -> dict[str, Any]:
        return app.state.healthcheck.run_task(settings.db, dict(ctx.args), created_by=ctx.task.created_by,
                                              task_id=ctx.task.id, progress=ctx.progress)

    tasks.handle(app, TASK_KIND, run_task)
    tasks.follow_county_changes(app, TASK_KIND)
    app.include_router(router)

"""Background tasks: ``GET /api/tasks`` and ``GET /api/tasks/{id}`` (state, progress, result, error)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool

from api import deps
from cim import db, tasks
from cim.auth import Action, Principal

router = APIRouter(prefix="/api/tasks", tags=["tasks / 后台任务"])
READ = Depends(deps.require(Action.read))


@router.get("", summary="后台任务列表 / background tasks, newest first")
async def list_tasks(request: Request, kind: str | None = Query(None, max_length=64, pattern=r"^[a-z][a-z0-9_.]*$"),
                     limit: int = Query(50, ge=1, le=500), who: Principal = READ) -> list[dict]:
    """Tasks of every kind (or of ``kind``), newest first."""
    rows = await run_in_threadpool(db.with_cursor, deps.settings(request).db, tasks.list_tasks, kind=kind, limit=limit)
    return [tasks.json_safe(r) for r in rows]


@router.get("/{task_id}", summary="后台任务状态 / one background task")
async def get_task(request: Request, task_id: int, who: Principal = READ) -> dict:
    """State (queued / running / done / failed / cancelled), progress, message, result or error."""
    return tasks.json_safe(await run_in_threadpool(db.with_cursor, deps.settings(request).db, tasks.get, task_id))


def register(app: FastAPI) -> None:
    """Mount this router."""
    app.include_router(router)

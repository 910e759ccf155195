"""Linked tiers over HTTP: ``GET /api/tiers`` (lower-tier running status) and this instance's heartbeat.

- ``GET /api/tiers`` → ``{"self", "thresholds", "summary": {"green", "amber", "red"}, "instances": [{"code",
  "name", "level", "status", "reasons", "beat_at", "age_s", "lag_s", "software_version", "last_delivery_id",
  "last_delivery_at", "data_versions", "errors", "subscription", "bbox"}]}`` — every instance below
  this one, coloured by heartbeat age and replication lag (:func:`cim.heartbeat.status`); the web
  map's 下级平台运行状态 panel draws it.
- Every server process runs the heartbeat loop; :func:`cim.heartbeat.beat` writes one row per
  interval for the instance however many processes call it.
- HTTP 5xx answers are recorded in ``cim.server_error`` (:func:`cim.heartbeat.record_server_error`,
  counted by the heartbeat).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.concurrency import run_in_threadpool

from api import deps
from cim import db, heartbeat
from cim.auth import Action, Principal

log = logging.getLogger(__name__)
router = APIRouter(tags=["tiers / 省市县级联"])


@router.get("/api/tiers", summary="下级平台运行状态 / lower-tier running status")
async def tiers_status(request: Request, who: Principal = Depends(deps.require(Action.read))) -> dict:
    """This instance and every instance below it: green / amber / red from heartbeat age and
    replication lag, with software version, last delivery, data versions and errors."""
    settings = deps.settings(request)
    return await run_in_threadpool(db.with_cursor, settings.db, heartbeat.status, settings.tier)


def register(app: FastAPI) -> None:
    """Mount the router; run the heartbeat loop and record 5xx answers while the app runs."""
    app.include_router(router)
    settings = app.state.settings
    started_at = dt.datetime.now(dt.UTC)
    pending: set[asyncio.Task] = set()

    def on_server_error(request: Request, status: int) -> None:
        pool = getattr(request.app.state, "pool", None)
        if pool is None:
            return
        task = asyncio.get_running_loop().create_task(
            heartbeat.record_server_error(pool, status, request.url.path))
        pending.add(task)
        task.add_done_callback(pending.discard)

    app.state.on_server_error = on_server_error

    async def loop() -> None:
        while True:
            try:
                await asyncio.to_thread(heartbeat.beat_once, settings.db, interval_s=settings.tier.heartbeat_s,
                                        started_at=started_at)
            except Exception as exc:  # noqa: BLE001 - a missed beat is what the status shows; keep beating
                log.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(settings.tier.heartbeat_s)

    async def start(app: FastAPI) -> None:
        app.state.heartbeat_task = asyncio.create_task(loop())

    async def stop(app: FastAPI) -> None:
        task = getattr(app.state, "heartbeat_task", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.state.startup_hooks.append(start)
    app.state.shutdown_hooks.append(stop)

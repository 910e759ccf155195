"""Background tasks of the server: the handlers the routers register, run by one worker per process.

Routers register a handler per task kind in ``register(app)`` (:func:`handle`) and may ask to
follow county changes (:func:`follow_county_changes`): when a delivery becomes current, the
database queues a ``county.changed`` task (migration 0060) and its handler queues one task of
each following kind for that county (``hazards.scan:<county>`` …), each with its own state,
retries and progress. The worker (:class:`cim.tasks.Worker`) starts with the app and claims
tasks with ``FOR UPDATE SKIP LOCKED``, so with several server processes each task still runs once.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from cim import db, tasks
from cim.tasks import Handler, TaskContext


def handle(app: FastAPI, kind: str, handler: Handler) -> None:
    """Run ``handler`` for tasks of ``kind`` in this server's worker."""
    app.state.task_handlers[kind] = handler


def follow_county_changes(app: FastAPI, kind: str) -> None:
    """Queue a task of ``kind`` (args ``county``, ``delivery_id``) whenever a county's data changes."""
    if kind not in app.state.county_followers:
        app.state.county_followers.append(kind)


def install(app: FastAPI) -> None:
    """Prepare the registries and start / stop the worker with the app."""
    app.state.task_handlers = {}
    app.state.county_followers = []
    settings = app.state.settings

    def county_changed(ctx: TaskContext) -> dict[str, Any]:
        county = str(ctx.args["county"])
        queued = {}
        conn = db.connect(settings.db, application_name="cim-task")
        try:
            with db.transaction(conn) as cur:
                for kind in app.state.county_followers:
                    queued[kind] = tasks.enqueue(cur, kind, {"county": county, "delivery_id": ctx.args.get("delivery_id")},
                                                 dedupe_key=f"{kind}:{county}", created_by=f"task:{ctx.task.id}")
        finally:
            conn.close()
        return {"county": county, "queued": queued}

    handle(app, "county.changed", county_changed)

    async def start(app: FastAPI) -> None:
        if settings.api.task_threads > 0:
            worker = tasks.Worker(db.resolve_url(settings.db), dict(app.state.task_handlers),
                                  threads=settings.api.task_threads, stale_after_s=settings.api.task_stale_s)
            worker.start()
            app.state.task_worker = worker

    async def stop(app: FastAPI) -> None:
        worker = getattr(app.state, "task_worker", None)
        if worker is not None:
            import asyncio
            await asyncio.to_thread(worker.stop, 10.0)

    app.state.startup_hooks.append(start)
    app.state.shutdown_hooks.append(stop)

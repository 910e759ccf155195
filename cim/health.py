"""Liveness of the platform as the province's monitor sees it: the server answers and so does PostGIS."""

from __future__ import annotations

from typing import Any

import asyncpg

from cim import dbcall, tasks


async def check(pool: asyncpg.Pool) -> dict[str, Any]:
    """``{"status": "ok", "postgis": <library version>, "process": "host:pid"}`` after one database
    round trip; ``process`` names the server process that answered (several run behind one port
    with ``cim serve --workers N``, or behind a load balancer on several hosts)."""
    return {"status": "ok", "postgis": await dbcall.run(pool, "fetchval", "SELECT postgis_lib_version()"),
            "process": tasks.worker_name()}

"""Liveness of the platform as the province's monitor sees it: the server answers and so does PostGIS."""

from __future__ import annotations

import asyncpg

from cim import dbcall


async def check(pool: asyncpg.Pool) -> dict:
    """``{"status": "ok", "postgis": <library version>}`` after one database round trip."""
    return {"status": "ok", "postgis": await dbcall.run(pool, "fetchval", "SELECT postgis_lib_version()")}

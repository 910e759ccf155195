"""The composition root: ``create_app(settings)`` builds the whole HTTP service.

Start-up opens the asyncpg pool (statement timeout on every connection, so one heavy query
cannot stall the server), loads the layer catalogue into ``app.state``, mounts every router
listed in :mod:`api.routers`, installs the single error table, and serves the built web map.
"""

from __future__ import annotations

import importlib
import logging
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from api import errors
from api.routers import ROUTERS
from cim import db
from cim.settings import Settings, load
from layers.catalog import load_catalog

log = logging.getLogger(__name__)

WEB_DIST = Path(__file__).resolve().parent.parent / "web" / "dist"


async def _init_connection(conn: asyncpg.Connection, timeout_ms: int) -> None:
    await conn.execute(f"SET statement_timeout = {int(timeout_ms)}; SET jit = off")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; nothing is read from the environment unless settings are omitted."""
    settings = settings or load()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        url = db.resolve_url(settings.db)
        timeout = settings.db.statement_timeout_ms
        app.state.pool = await asyncpg.create_pool(
            url, min_size=settings.db.pool_min, max_size=settings.db.pool_max,
            init=lambda c: _init_connection(c, timeout), command_timeout=max(timeout / 1000 * 2, 5),
            # startup parameters survive the pool's RESET ALL on release (a SET in init does not)
            server_settings={"statement_timeout": str(int(timeout)), "jit": "off"})
        for hook in app.state.startup_hooks:
            await hook(app)
        try:
            yield
        finally:
            for hook in app.state.shutdown_hooks:
                await hook(app)
            await app.state.pool.close()

    app = FastAPI(title="CIM 一张图 API", version="0.1.0", lifespan=lifespan,
                  description="城市信息模型一张图：OGC API Features/Tiles、一张图矢量瓦片、空间查询、数据入库、3D Tiles。\n\n"
                              "City information model one-map: OGC API Features/Tiles, composite vector tiles, "
                              "spatial queries, survey ingest and 3D Tiles.")
    app.state.settings = settings
    app.state.catalog = load_catalog()
    app.state.token_cache = {}
    app.state.startup_hooks = []
    app.state.shutdown_hooks = []
    errors.install(app)
    app.add_middleware(CORSMiddleware, allow_origins=settings.api.cors_origins, allow_methods=["*"],
                       allow_headers=["*"], expose_headers=["ETag", "Content-Crs", "Link"])
    for name in ROUTERS:
        module = importlib.import_module(name)
        module.register(app)
    web_root = settings.api.web_root or WEB_DIST
    if web_root.is_dir():
        app.mount("/", StaticFiles(directory=web_root, html=True), name="web")
    return app


def factory() -> FastAPI:
    """Entry for ``uvicorn --factory api.app:factory``: settings from the environment."""
    return create_app(load())

"""The composition root: ``create_app(settings)`` builds the whole HTTP service.

Start-up opens the asyncpg pool (statement timeout on every connection, so one heavy query
cannot stall the server), starts the one data-version watcher (``app.state.versions``) every
cache keys on, loads the layer catalogue into ``app.state``, mounts every router
listed in :mod:`api.routers`, installs the single error table, and serves the built web map.
"""

from __future__ import annotations

import gc
import importlib
import logging
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from api import errors, tasks
from api.encoding import GZipMiddleware
from api.routers import ROUTERS
from api.routers.tiles import TileFastPath
from cim import db
from cim.settings import Settings, load
from cim.versions import VersionWatcher
from layers.catalog import load_catalog

log = logging.getLogger(__name__)

WEB_DIST = Path(__file__).resolve().parent.parent / "web" / "dist"


async def _init_connection(conn: asyncpg.Connection, timeout_ms: int) -> None:
    # postgis_lib_version() makes the new backend load the PostGIS library (50–85 ms on a busy
    # machine) while the connection is being opened, not during the first request it serves:
    # the connections CIM_POOL_MIN opens at start-up are then ready for geometry at once.
    await conn.execute(f"SET statement_timeout = {int(timeout_ms)}; SET jit = off; SELECT postgis_lib_version()")


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
        app.state.versions = VersionWatcher(url)
        await app.state.versions.start(app.state.pool)
        for hook in app.state.startup_hooks:
            await hook(app)
        # The catalogue, routes, OpenAPI models and imported modules are ~120k objects that live as
        # long as the process: a full (generation 2) collection that walks them all stops the event
        # loop, and so every request in flight, for ~100 ms. Frozen, they are left out of every
        # collection and a full one walks only what requests allocated.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            for hook in app.state.shutdown_hooks:
                await hook(app)
            await app.state.versions.stop()
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
    tasks.install(app)
    app.add_middleware(CORSMiddleware, allow_origins=settings.api.cors_origins, allow_methods=["*"],
                       allow_headers=["*"], expose_headers=["ETag", "Content-Crs", "Link"])
    for name in ROUTERS:
        module = importlib.import_module(name)
        module.register(app)
    web_root = settings.api.web_root or WEB_DIST
    if web_root.is_dir():
        _mount_web(app, web_root)
    # JSON, GeoJSON and the web bundle compress 5-10x; tiles and items pages arrive already
    # gzip-encoded (api.encoding) and range (206) answers are left alone by the middleware.
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=5)
    app.add_middleware(HeadAsGet)
    app.add_middleware(TileFastPath)  # outermost: see api.routers.tiles
    return app


def _mount_web(app: FastAPI, web_root: Path) -> None:
    """Serve the built web map: ``/`` is its index page, each top-level entry its own route.

    No catch-all is mounted at ``/``, so a path the API does not know, or a wrong method on an API
    path, still gets the API's own bilingual 404 / 405 instead of the static handler's answer.
    """
    index = web_root / "index.html"

    async def page() -> FileResponse:
        return FileResponse(index, media_type="text/html; charset=utf-8")

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    for entry in sorted(web_root.iterdir()):
        if entry.is_dir():
            app.mount(f"/{entry.name}", StaticFiles(directory=entry), name=f"web-{entry.name}")
        elif entry.name != "index.html":
            app.add_api_route(f"/{entry.name}", _file_endpoint(entry), methods=["GET"], include_in_schema=False)


def _file_endpoint(path: Path):
    async def serve() -> FileResponse:
        return FileResponse(path)

    return serve


class HeadAsGet:
    """Answer HEAD like GET without the body (RFC 9110 §9.3.2) for every GET route."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message) -> None:
            if message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await send(message)

        await self.app(dict(scope, method="GET"), receive, send_headers_only)


def factory() -> FastAPI:
    """Entry for ``uvicorn --factory api.app:factory``: settings from the environment."""
    return create_app(load())

"""Vector tiles: the one-map composite, TileJSON, the MapLibre style, glyphs, OGC API – Tiles, PMTiles.

Contract: docs/api-contract.md "Vector tiles". Tile bytes come from :mod:`tiles.service`
(compiled SQL, version-keyed cache); this module only speaks HTTP: ETag / If-None-Match (304),
``Cache-Control``, gzip when accepted, 204 for empty tiles, bilingual 400/404 for bad addresses.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from api import deps
from cim import auth, db
from cim.auth import Action
from cim.errors import CimError, InvalidInput, NotFound
from tiles import glyphs, ogc
from tiles.cache import TileEntry
from tiles.mvt import bounds_query, check_tile
from tiles.pmtiles_export import ArchiveSet
from tiles.service import TileService
from tiles.style import onemap_style, tilejson

MVT = "application/vnd.mapbox-vector-tile"
router = APIRouter(tags=["tiles / 矢量瓦片"], dependencies=[Depends(deps.require(Action.read))])
_INT = re.compile(r"^\d{1,8}$")


def _service(request: Request) -> TileService:
    return request.app.state.tiles


def _int(name: str, text: str) -> int:
    if not _INT.match(text):
        raise InvalidInput(f"瓦片坐标 {name} 不是非负整数：{text[:20]}", f"tile {name} is not a non-negative integer: {text[:20]}")
    return int(text)


def _address(z: str, x: str, y: str) -> tuple[int, int, int]:
    zi, xi, yi = _int("z", z), _int("x", x), _int("y", y)
    check_tile(zi, xi, yi)
    return zi, xi, yi


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def tile_answer(entry: TileEntry | None, etag: str, max_age: int, accept_gzip: bool) -> tuple[int, dict, bytes]:
    """Status, headers and body of a tile: 204 when empty, gzip or plain MVT, with ETag and Cache-Control."""
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={max_age}", "Vary": "Accept-Encoding"}
    if entry is None or entry.empty:
        return 204, headers, b""
    headers["Content-Type"] = MVT
    if accept_gzip:
        headers["Content-Encoding"] = "gzip"
        return 200, headers, entry.gz
    return 200, headers, entry.raw()


def etag_matches(etag: str, if_none_match: str | None) -> bool:
    """True when ``If-None-Match`` names ``etag`` (answered with 304)."""
    return bool(if_none_match) and etag in {t.strip() for t in if_none_match.split(",")}


def tile_response(request: Request, entry: TileEntry | None, etag: str) -> Response:
    """HTTP response of a tile: 204 / gzip or plain MVT, with ETag and Cache-Control."""
    status, headers, body = tile_answer(entry, etag, request.app.state.settings.tiles.cache_max_age_s,
                                        "gzip" in request.headers.get("accept-encoding", ""))
    media_type = headers.pop("Content-Type", None)
    return Response(body, status_code=status, media_type=media_type, headers=headers)


async def _tile(request: Request, layer_ids: tuple[str, ...], z: int, x: int, y: int) -> Response:
    svc = _service(request)
    etag = svc.etag(svc.key(layer_ids, z, x, y))
    if etag_matches(etag, request.headers.get("if-none-match")):
        return Response(status_code=304, headers={"ETag": etag})
    return tile_response(request, await svc.tile(layer_ids, z, x, y), etag)


@router.get("/tiles/{layers}/{z}/{x}/{y}.mvt", summary="一张图矢量瓦片 / composite vector tile",
            responses={200: {"content": {MVT: {}}}, 204: {"description": "empty tile / 空瓦片"}})
async def composite_tile(request: Request, layers: str, z: str, x: str, y: str) -> Response:
    """Any set of layers (comma-separated ids) in one Mapbox Vector Tile; each MVT layer is named by its id.

    Example: `/tiles/buildings,pipeline_segments/16/53520/28540.mvt`.
    """
    ids = _service(request).compiler.parse_layers(layers)
    return await _tile(request, ids, *_address(z, x, y))


async def _bounds(request: Request, layer_ids: tuple[str, ...]) -> list[float] | None:
    """Lon/lat bounds of the current data of these layers (cached per data version)."""
    svc = _service(request)
    key = ("bounds", svc.key(layer_ids, 0, 0, 0)[:2])
    cached = request.app.state.tile_meta.get(key)
    if cached is not None:
        return cached or None
    boxes = []
    async with request.app.state.pool.acquire() as conn:
        for lid in layer_ids:
            sql, args = bounds_query(svc.compiler.layers[lid].spec)
            row = await conn.fetchrow(sql, *args)
            if row and row["xmin"] is not None:
                boxes.append([row["xmin"], row["ymin"], row["xmax"], row["ymax"]])
    out = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
           max(b[3] for b in boxes)] if boxes else []
    request.app.state.tile_meta[key] = out
    return out or None


@router.get("/tiles/{layers}.json", summary="TileJSON 3.0.0")
async def tile_json(request: Request, layers: str) -> JSONResponse:
    """TileJSON of a composite tile set: tile URL template, zooms, bounds, vector_layers with fields."""
    ids = _service(request).compiler.parse_layers(layers)
    specs = [_service(request).compiler.layers[i].spec for i in ids]
    doc = tilejson(specs, _base_url(request), await _bounds(request, ids))
    return JSONResponse(doc, headers={"Cache-Control": "no-cache"})


@router.get("/styles/onemap.json", summary="一张图 MapLibre 样式 / MapLibre style of the one-map")
async def style(request: Request) -> JSONResponse:
    """MapLibre style (v8) of all public layers, generated from the catalogue (CJJ 61 colours, Chinese labels)."""
    specs = [c.spec for c in _service(request).compiler.layers.values()]
    return JSONResponse(onemap_style(specs, _base_url(request)), headers={"Cache-Control": "no-cache"})


@router.get("/fonts/{fontstack}/{glyph_range}.pbf", summary="标注字形 / label glyphs (SDF protobuf)")
async def fonts(request: Request, fontstack: str, glyph_range: str) -> Response:
    """Glyphs of one 256-code-point range, rendered offline from the installed Noto Sans CJK."""
    glyphs.parse_range(glyph_range)
    cache_dir = request.app.state.settings.db.home_dir / "glyphs"
    data = await asyncio.to_thread(glyphs.glyph_range, fontstack, glyph_range, cache_dir)
    return Response(data, media_type="application/x-protobuf", headers={"Cache-Control": "public, max-age=86400"})


# ---- OGC API – Tiles (Part 1: core, tileset, tilesets-list, geodata-tilesets) ----

def _spec(request: Request, collection_id: str):
    layer = _service(request).compiler.layers.get(collection_id)
    if layer is None:
        raise NotFound(f"没有数据集 {collection_id}", f"no collection {collection_id}")
    return layer.spec


@router.get("/ogc/collections/{collection_id}/tiles", summary="OGC 瓦片集列表 / tilesets of a collection")
async def ogc_tilesets(request: Request, collection_id: str) -> dict:
    """The vector tilesets of a collection (one: WebMercatorQuad)."""
    return ogc.tilesets(_spec(request, collection_id), _base_url(request))


@router.get("/ogc/collections/{collection_id}/tiles/WebMercatorQuad", summary="OGC 瓦片集 / tileset metadata")
async def ogc_tileset(request: Request, collection_id: str) -> dict:
    """Tileset metadata: tile matrix set URI, limits per zoom, layers, bounding box, tile URL template."""
    spec = _spec(request, collection_id)
    return ogc.tileset(spec, _base_url(request), await _bounds(request, (spec.id,)))


@router.get("/ogc/collections/{collection_id}/tiles/WebMercatorQuad/{z}/{row}/{col}",
            summary="OGC 瓦片 / tile (tileMatrix/tileRow/tileCol)",
            responses={200: {"content": {MVT: {}}}, 204: {"description": "empty tile / 空瓦片"}})
async def ogc_tile(request: Request, collection_id: str, z: str, row: str, col: str) -> Response:
    """One collection's tile; note the OGC order: zoom, row (y), column (x)."""
    spec = _spec(request, collection_id)
    zi, yi, xi = _int("tileMatrix", z), _int("tileRow", row), _int("tileCol", col)
    check_tile(zi, xi, yi)
    if not spec.minzoom <= zi <= spec.maxzoom:
        raise NotFound(f"{spec.id} 只在 {spec.minzoom}–{spec.maxzoom} 级提供瓦片",
                       f"{spec.id} has tiles at zooms {spec.minzoom}–{spec.maxzoom} only")
    return await _tile(request, (spec.id,), zi, xi, yi)


@router.get("/ogc/tileMatrixSets", summary="OGC 瓦片矩阵集 / tile matrix sets")
async def tile_matrix_sets(request: Request) -> dict:
    """The tile matrix sets offered (WebMercatorQuad)."""
    return ogc.tile_matrix_sets(_base_url(request))


@router.get("/ogc/tileMatrixSets/{tms_id}", summary="OGC 瓦片矩阵集定义 / tile matrix set definition")
async def tile_matrix_set(request: Request, tms_id: str) -> dict:
    """OGC 2D Tile Matrix Set 2.0 definition of WebMercatorQuad."""
    if tms_id != "WebMercatorQuad":
        raise NotFound(f"没有瓦片矩阵集 {tms_id}", f"no tile matrix set {tms_id}")
    return ogc.web_mercator_quad()


# ---- PMTiles archives made by `cim tiles export` ----

@router.get("/pmtiles/{name}/{z}/{x}/{y}.mvt", summary="PMTiles 归档中的瓦片 / tile from a PMTiles archive",
            responses={200: {"content": {MVT: {}}}, 204: {"description": "no such tile / 无此瓦片"}})
async def pmtiles_tile(request: Request, name: str, z: str, x: str, y: str) -> Response:
    """A tile read from a PMTiles archive in `$CIM_HOME/pmtiles` (or `CIM_TILES_PMTILES`)."""
    zi, xi, yi = _address(z, x, y)
    archives: ArchiveSet = request.app.state.pmtiles
    data, etag = await asyncio.to_thread(archives.tile, name, zi, xi, yi)
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={request.app.state.settings.tiles.cache_max_age_s}"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    if not data:
        return Response(status_code=204, headers=headers)
    headers["Content-Encoding"] = "gzip"  # archives store gzip tiles
    return Response(data, media_type=MVT, headers=headers)


@router.get("/pmtiles/{name}.pmtiles", summary="PMTiles 归档文件 / the raw archive (HTTP Range for pmtiles.js)")
async def pmtiles_file(request: Request, name: str) -> FileResponse:
    """The archive itself; supports `Range` requests as PMTiles clients need."""
    path: Path = request.app.state.pmtiles.path(name)
    return FileResponse(path, media_type="application/vnd.pmtiles")


_COMPOSITE_PATH = re.compile(r"^/tiles/([^/]+)/(\d{1,8})/(\d{1,8})/(\d{1,8})\.mvt$")
_OGC_PATH = re.compile(r"^/ogc/collections/([^/]+)/tiles/WebMercatorQuad/(\d{1,8})/(\d{1,8})/(\d{1,8})$")
_FAST_HEADERS = {b"accept-encoding", b"if-none-match", b"authorization", b"x-api-key", b"origin"}


class TileFastPath:
    """ASGI middleware answering the tile requests of a map client without the framework.

    A map view fetches tens of tiles per pan; for an uncached tile at high zoom the routing,
    dependency injection and response middlewares of the framework cost as much CPU as the
    database's rendering. This middleware, outermost in the stack, answers a ``GET`` of a
    composite or OGC tile itself when the request is well formed, the caller is allowed to
    read (anonymous with public read, or a token verified within the last seconds) and the
    tile renders; it uses the same :class:`tiles.service.TileService`, access check and
    :func:`tile_answer` as the routes, so the bytes and headers are the same. Everything else —
    a bad address, an unknown layer, a token not yet verified, a CORS request (``Origin``),
    ``HEAD``, a database error — goes on to the routes, whose answer (including the bilingual
    error) is the reference.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path = scope["path"]
            match = _COMPOSITE_PATH.match(path) or _OGC_PATH.match(path)
            if match is not None:
                answer = await self._answer(scope, match)
                if answer is not None:
                    status, headers, body = answer
                    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
                    if body:
                        raw.append((b"content-length", str(len(body)).encode()))
                    await send({"type": "http.response.start", "status": status, "headers": raw})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    @staticmethod
    async def _answer(scope, match: re.Match) -> tuple[int, dict, bytes] | None:
        state = scope["app"].state
        svc: TileService | None = getattr(state, "tiles", None)
        if svc is None:
            return None
        headers = {k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k in _FAST_HEADERS}
        if "origin" in headers:
            return None
        token = None
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            token = bearer[7:].strip() or None
        token = token or headers.get("x-api-key") or None
        who = auth.ANONYMOUS
        if token:
            hit = state.token_cache.get(token)
            if hit is None or time.monotonic() - hit[0] >= deps.TOKEN_TTL_S:
                return None
            who = hit[1]
        try:
            auth.authorize(who, Action.read, public_read=state.settings.auth.public_read)
            name, z, a, b = match.groups()
            z, a, b = int(z), int(a), int(b)
            if match.re is _COMPOSITE_PATH:
                ids, x, y = svc.compiler.parse_layers(name), a, b
            else:
                layer = svc.compiler.layers.get(name)
                if layer is None or not layer.in_range(z):
                    return None
                ids, x, y = (name,), b, a
            check_tile(z, x, y)
        except CimError:
            return None
        etag = svc.etag(svc.key(ids, z, x, y))
        if etag_matches(etag, headers.get("if-none-match")):
            return 304, {"ETag": etag}, b""
        try:
            entry = await svc.tile(ids, z, x, y)
        except Exception:  # the route renders again and answers with the error table
            return None
        return tile_answer(entry, etag, state.settings.tiles.cache_max_age_s,
                           "gzip" in headers.get("accept-encoding", ""))


def register(app: FastAPI) -> None:
    """Mount the router and start the tile service with the app."""
    settings = app.state.settings
    app.state.tile_meta = {}
    pm_dir = settings.tiles.pmtiles or settings.db.home_dir / "pmtiles"
    app.state.pmtiles = ArchiveSet(pm_dir)

    async def start(app: FastAPI) -> None:
        svc = TileService(app.state.catalog, settings.tiles, db.resolve_url(settings.db), app.state.versions)
        await svc.start(settings.db.statement_timeout_ms, settings.db.pool_max)
        app.state.tiles = svc

    async def stop(app: FastAPI) -> None:
        if getattr(app.state, "tiles", None):
            await app.state.tiles.stop()

    app.state.startup_hooks.append(start)
    app.state.shutdown_hooks.append(stop)
    app.include_router(router)

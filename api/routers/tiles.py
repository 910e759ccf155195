"""Vector tiles: the one-map composite, TileJSON, the MapLibre style, glyphs, OGC API – Tiles, PMTiles.

Contract: docs/api-contract.md "Vector tiles". Tile bytes come from :mod:`tiles.service`
(compiled SQL, version-keyed cache); how a tile becomes an answer (ETag / If-None-Match → 304,
``Cache-Control``, gzip when accepted, 204 for empty tiles) is decided in :mod:`api.tile_answer`.
This module parses tile addresses (bilingual 400/404 for bad ones) and holds the tile adapter
:class:`TileFastPath`, which answers well-formed tile GETs with the same functions as the routes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from api import deps, tile_answer
from api.tile_answer import MVT
from cim import db
from cim.auth import Action
from cim.errors import InvalidInput, NotFound
from layers.spec import LayerSpec
from tiles import glyphs, ogc
from tiles.mvt import check_tile
from tiles.pmtiles_export import ArchiveSet
from tiles.service import TileService
from tiles.style import onemap_style, tilejson

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


def collection_spec(svc: TileService, collection_id: str) -> LayerSpec:
    """The layer of an OGC collection id, or NotFound."""
    layer = svc.compiler.layers.get(collection_id)
    if layer is None:
        raise NotFound(f"没有数据集 {collection_id}", f"no collection {collection_id}")
    return layer.spec


def composite_address(svc: TileService, layers: str, z: str, x: str, y: str) -> tuple[tuple[str, ...], int, int, int]:
    """Layer ids and tile address of a composite tile URL (``/tiles/{layers}/{z}/{x}/{y}.mvt``)."""
    ids = svc.compiler.parse_layers(layers)
    return (ids, *_address(z, x, y))


def ogc_address(svc: TileService, collection_id: str, z: str, row: str, col: str) -> tuple[tuple[str, ...], int, int, int]:
    """Layer id and tile address of an OGC tile URL; note the OGC order: zoom, row (y), column (x).

    404 outside the collection's zooms (OGC API – Tiles: a tile outside the tileset's limits).
    """
    spec = collection_spec(svc, collection_id)
    zi, yi, xi = _int("tileMatrix", z), _int("tileRow", row), _int("tileCol", col)
    check_tile(zi, xi, yi)
    if not spec.minzoom <= zi <= spec.maxzoom:
        raise NotFound(f"{spec.id} 只在 {spec.minzoom}–{spec.maxzoom} 级提供瓦片",
                       f"{spec.id} has tiles at zooms {spec.minzoom}–{spec.maxzoom} only")
    return (spec.id,), zi, xi, yi


async def mvt_answer(state, layer_ids: tuple[str, ...], z: int, x: int, y: int,
                     headers: Mapping[str, str]) -> tile_answer.Answer:
    """The answer to a vector tile request: 304 by ETag before any lookup, else the cached or
    rendered tile (:meth:`tiles.service.TileService.tile`)."""
    svc: TileService = state.tiles

    async def gz() -> bytes:
        return (await svc.tile(layer_ids, z, x, y)).gz

    return await tile_answer.answer(state.mvt_kind, svc.etag(svc.key(layer_ids, z, x, y)), headers, gz)


@router.get("/tiles/{layers}/{z}/{x}/{y}.mvt", summary="一张图矢量瓦片 / composite vector tile",
            responses={200: {"content": {MVT: {}}}, 204: {"description": "empty tile / 空瓦片"}})
async def composite_tile(request: Request, layers: str, z: str, x: str, y: str) -> Response:
    """Any set of layers (comma-separated ids) in one Mapbox Vector Tile; each MVT layer is named by its id.

    Example: `/tiles/buildings,pipeline_segments/16/53520/28540.mvt`.
    """
    ids, zi, xi, yi = composite_address(_service(request), layers, z, x, y)
    return tile_answer.response(await mvt_answer(request.app.state, ids, zi, xi, yi, request.headers))


@router.get("/tiles/{layers}.json", summary="TileJSON 3.0.0")
async def tile_json(request: Request, layers: str) -> JSONResponse:
    """TileJSON of a composite tile set: tile URL template, zooms, bounds, vector_layers with fields."""
    ids = _service(request).compiler.parse_layers(layers)
    specs = [_service(request).compiler.layers[i].spec for i in ids]
    doc = tilejson(specs, _base_url(request), await _service(request).bounds(ids))
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

@router.get("/ogc/collections/{collection_id}/tiles", summary="OGC 瓦片集列表 / tilesets of a collection")
async def ogc_tilesets(request: Request, collection_id: str) -> dict:
    """The vector tilesets of a collection (one: WebMercatorQuad)."""
    return ogc.tilesets(collection_spec(_service(request), collection_id), _base_url(request))


@router.get("/ogc/collections/{collection_id}/tiles/WebMercatorQuad", summary="OGC 瓦片集 / tileset metadata")
async def ogc_tileset(request: Request, collection_id: str) -> dict:
    """Tileset metadata: tile matrix set URI, limits per zoom, layers, bounding box, tile URL template."""
    spec = collection_spec(_service(request), collection_id)
    return ogc.tileset(spec, _base_url(request), await _service(request).bounds((spec.id,)))


@router.get("/ogc/collections/{collection_id}/tiles/WebMercatorQuad/{z}/{row}/{col}",
            summary="OGC 瓦片 / tile (tileMatrix/tileRow/tileCol)",
            responses={200: {"content": {MVT: {}}}, 204: {"description": "empty tile / 空瓦片"}})
async def ogc_tile(request: Request, collection_id: str, z: str, row: str, col: str) -> Response:
    """One collection's tile; note the OGC order: zoom, row (y), column (x)."""
    ids, zi, xi, yi = ogc_address(_service(request), collection_id, z, row, col)
    return tile_answer.response(await mvt_answer(request.app.state, ids, zi, xi, yi, request.headers))


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
    etag = await asyncio.to_thread(archives.etag, name, zi, xi, yi)

    async def gz() -> bytes | None:  # archives store gzip tiles
        return await asyncio.to_thread(archives.tile, name, zi, xi, yi)

    return tile_answer.response(await tile_answer.answer(request.app.state.mvt_kind, etag, request.headers, gz))


@router.get("/pmtiles/{name}.pmtiles", summary="PMTiles 归档文件 / the raw archive (HTTP Range for pmtiles.js)")
async def pmtiles_file(request: Request, name: str) -> FileResponse:
    """The archive itself; supports `Range` requests as PMTiles clients need."""
    path: Path = request.app.state.pmtiles.path(name)
    return FileResponse(path, media_type="application/vnd.pmtiles")


_TILE_PATHS = ((re.compile(r"^/tiles/([^/]+)/([^/]+)/([^/]+)/([^/]+)\.mvt$"), composite_address),
               (re.compile(r"^/ogc/collections/([^/]+)/tiles/WebMercatorQuad/([^/]+)/([^/]+)/([^/]+)$"), ogc_address))
_ADAPTER_HEADERS = {b"accept-encoding", b"if-none-match", b"authorization", b"x-api-key", b"origin"}


class TileFastPath:
    """ASGI adapter: a tile ``GET`` goes from the socket straight to the tile service.

    A map view fetches tens of tiles per pan; for a cached tile the framework's routing,
    dependency injection and response middlewares would cost several times the work of the
    answer itself. Outermost in the stack, this adapter matches the two tile URL shapes and
    calls exactly what the routes call — :func:`composite_address` / :func:`ogc_address`,
    :func:`api.deps.token_from` and :func:`api.deps.principal_of`, :func:`api.deps.allow`,
    :func:`mvt_answer` — then sends the answer with :func:`api.tile_answer.send`. It only steps
    aside: anything that raises (a bad address, an unknown layer, a refused token, a database
    error) and any request the framework must dress (CORS requests with ``Origin``, ``HEAD``)
    goes on to the routes, whose answer, with the bilingual error table, is the reference.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            for pattern, address in _TILE_PATHS:
                match = pattern.match(scope["path"])
                if match is not None:
                    answer = await self._answer(scope["app"].state, scope["headers"], address, match.groups())
                    if answer is not None:
                        await tile_answer.send(answer, send)
                        return
                    break
        await self.app(scope, receive, send)

    @staticmethod
    async def _answer(state, raw_headers, address, parts) -> tile_answer.Answer | None:
        svc: TileService | None = getattr(state, "tiles", None)
        headers = {k.decode(): v.decode("latin-1") for k, v in raw_headers if k in _ADAPTER_HEADERS}
        if svc is None or "origin" in headers:
            return None
        try:
            ids, z, x, y = address(svc, *parts)
            deps.allow(state, await deps.principal_of(state, deps.token_from(headers)), Action.read)
            return await mvt_answer(state, ids, z, x, y, headers)
        except Exception:  # the route answers again, through the error table
            return None


def register(app: FastAPI) -> None:
    """Mount the router and start the tile service with the app."""
    settings = app.state.settings
    pm_dir = settings.tiles.pmtiles or settings.db.home_dir / "pmtiles"
    app.state.pmtiles = ArchiveSet(pm_dir)

    app.state.mvt_kind = tile_answer.TileKind.public(tile_answer.MVT, settings.tiles.cache_max_age_s,
                                                     gzip_bodies=True)

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

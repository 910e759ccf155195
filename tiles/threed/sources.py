"""What goes into the 3D layers: per-feature index (bbox, heights) and per-tile content meshes.

Two 3D layers:
- ``buildings``: cim.building (layer spec ``buildings``), LOD1 blocks;
- ``pipelines``: cim.pipe_segment as tubes (spec ``pipeline_segments``) plus wells and
  appurtenances of cim.pipe_point (spec ``pipeline_points``) as cylinders and markers.

The index is one query per table without geometry; every height the meshes use is computed
from it in numpy, so tile bounding volumes and meshes agree exactly. Elevation rules
(CJJ 61 §4 depths; docs/3dtiles.md):
- building: base = building.ground_z, else the DEM at the bbox centre, else 0; height =
  height_m, else floors_above × storey height of the use (dict_building_use.attrs), else 3 m;
- pipe end: the reference elevation is start_z/end_z, else ground − depth (ground = the end
  point's ground_z, else the DEM, else 0), else ground − 1 m to the top; the reference is turned
  into the centre line by z_ref: top → −h/2, invert → +h/2, centre → as is;
- well: from ground down to invert_z, else ground − well_depth, else 1.5 m.
"The DEM" is the current DEM of the feature's own county (else the instance's), so the features
of several counties in one instance (a city, a province) each stand on their own county's ground
(:func:`cim.raster.sample_by_county`); every height is per feature, there is no tileset offset.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg2.extensions
import shapely

from cim import raster
from cim.db import quote_ident
from cim.errors import Conflict
from cim.schema import DEM_VERSION_KEY
from layers.catalog import Catalog
from layers.spec import LayerSpec
from layers.sqlbuild import where_conditions
from tiles.threed.geometry import CIRCLE, RECT, Frame, Mesh, extrude, tubes
from tiles.threed.glb import Column, Primitive

LAYERS = ("buildings", "pipelines")
SPEC_IDS = {"buildings": ("buildings",), "pipelines": ("pipeline_segments", "pipeline_points")}
DEFAULT_STOREY_M = 3.0
DEFAULT_HEIGHT_M = 3.0
DEFAULT_COVER_M = 1.0
DEFAULT_DIAMETER_MM = 200.0
DEFAULT_WELL_DEPTH_M = 1.5
MARKER_HALF_M = 0.25
_NUM = re.compile(r"(\d+(?:\.\d+)?)")


@dataclass
class Index:
    """Per-feature facts of a 3D layer, in one order: kind 0 = building/segment, 1 = point."""

    layer: str
    kind: np.ndarray
    ids: np.ndarray
    bbox: np.ndarray                       # (n, 4) lon/lat w, s, e, n
    zmin: np.ndarray
    zmax: np.ndarray
    params: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, sel: np.ndarray) -> Index:
        """The features at positions ``sel``."""
        return Index(self.layer, self.kind[sel], self.ids[sel], self.bbox[sel], self.zmin[sel], self.zmax[sel],
                     {k: v[sel] for k, v in self.params.items()})


def source_tables(layer: str, catalog: Catalog) -> tuple[str, ...]:
    """The data-version keys a 3D layer depends on: its specs' tables and the DEM (ground)."""
    tables = sorted({key for spec_id in SPEC_IDS[layer] for key in catalog.get(spec_id).version_keys})
    return (*tables, DEM_VERSION_KEY)


def _f(rows: list, i: int) -> np.ndarray:
    return np.array([np.nan if r[i] is None else r[i] for r in rows], dtype="f8")


def _where(spec: LayerSpec, alias: str) -> tuple[str, list]:
    """The spec's fixed filter as `` AND …`` SQL with psycopg2-bound values."""
    params: list[Any] = []

    def bind(value: Any, _pg_type: str) -> str:
        params.append(value)
        return "%s"

    conds = where_conditions(spec, alias, bind)
    return "".join(" AND " + c for c in conds), params


def _ground(fallback: np.ndarray, conn, lon: np.ndarray, lat: np.ndarray, counties: np.ndarray) -> np.ndarray:
    """Stored ground where known, else the DEM of the feature's county, else 0."""
    out = fallback.copy()
    missing = np.isnan(out)
    if missing.any():
        dem = raster.sample_by_county(conn, counties[missing], lon[missing], lat[missing])
        out[missing] = dem if dem is not None else np.nan
    return np.nan_to_num(out, nan=0.0)


def _counties(rows: list, i: int) -> np.ndarray:
    return np.array([r[i] for r in rows], dtype=object)


def building_index(conn: psycopg2.extensions.connection, catalog: Catalog) -> Index:
    """Index of current buildings with base and top elevations."""
    extra, params = _where(catalog.get("buildings"), "b")
    with conn.cursor() as cur:
        cur.execute(
            "SELECT b.id, ST_XMin(x.bx), ST_YMin(x.bx), ST_XMax(x.bx), ST_YMax(x.bx), b.height_m, b.floors_above, "
            "COALESCE((u.attrs->>'storey_height_m')::float8, (pu.attrs->>'storey_height_m')::float8), b.ground_z, "
            "b.county_code "
            "FROM cim.building b CROSS JOIN LATERAL (SELECT b.geom::box2d AS bx) x "
            "LEFT JOIN cim.dict_building_use u ON u.code = b.use_code "
            "LEFT JOIN cim.dict_building_use pu ON pu.code = u.parent_code "
            "WHERE b.is_current" + extra + " ORDER BY b.id", params)
        rows = cur.fetchall()
    n = len(rows)
    ids = np.array([r[0] for r in rows], dtype="i8")
    bbox = np.column_stack([_f(rows, i) for i in range(1, 5)]) if n else np.zeros((0, 4))
    height, floors, storey = _f(rows, 5), _f(rows, 6), _f(rows, 7)
    storey = np.where(np.isnan(storey) | (storey <= 0), DEFAULT_STOREY_M, storey)
    h = np.where(height > 0, height, np.where(floors > 0, floors * storey, DEFAULT_HEIGHT_M))
    h = np.nan_to_num(h, nan=DEFAULT_HEIGHT_M)
    cx, cy = (bbox[:, 0] + bbox[:, 2]) / 2, (bbox[:, 1] + bbox[:, 3]) / 2
    base = _ground(_f(rows, 8), conn, cx, cy, _counties(rows, 9)) if n else np.zeros(0)
    return Index("buildings", np.zeros(n, "i1"), ids, bbox, base, base + h, {"base": base, "top": base + h})


def _centre(ref: np.ndarray, z_ref: np.ndarray, hh: np.ndarray) -> np.ndarray:
    return np.where(z_ref == "top", ref - hh, np.where(z_ref == "invert", ref + hh, ref))


def pipeline_index(conn: psycopg2.extensions.connection, catalog: Catalog) -> Index:
    """Index of current pipe segments (centre-line elevations, section) and wells/appurtenances."""
    seg_where, seg_params = _where(catalog.get("pipeline_segments"), "s")
    pt_where, pt_params = _where(catalog.get("pipeline_points"), "p")
    ground_sql = ("COALESCE({a}.ground_z, (SELECT q.ground_z FROM cim.pipe_point q WHERE q.county_code = s.county_code "
                  "AND q.delivery_id = s.delivery_id AND q.exp_no = s.{no} AND q.is_current LIMIT 1))")
    with conn.cursor() as cur:
        cur.execute(
            "SELECT s.id, ST_XMin(s.geom::box2d), ST_YMin(s.geom::box2d), ST_XMax(s.geom::box2d), "
            "ST_YMax(s.geom::box2d), s.start_z, s.end_z, s.start_depth, s.end_depth, s.diameter_mm, s.width_mm, "
            "s.height_mm, " + ground_sql.format(a="sp", no="start_exp_no") + ", "
            + ground_sql.format(a="ep", no="end_exp_no") + ", ST_X(ST_StartPoint(s.geom)), ST_Y(ST_StartPoint(s.geom)), "
            "ST_X(ST_EndPoint(s.geom)), ST_Y(ST_EndPoint(s.geom)), s.z_ref, s.section_shape, s.county_code "
            "FROM cim.pipe_segment s LEFT JOIN cim.pipe_point sp ON sp.id = s.start_point_id "
            "LEFT JOIN cim.pipe_point ep ON ep.id = s.end_point_id WHERE s.is_current" + seg_where + " ORDER BY s.id",
            seg_params)
        srows = cur.fetchall()
        cur.execute(
            "SELECT p.id, ST_X(p.geom), ST_Y(p.geom), p.ground_z, p.well_depth, p.depth, p.invert_z, p.well_cover, "
            "(p.well_depth IS NOT NULL OR p.invert_z IS NOT NULL OR p.node_type IN ('manhole', 'inlet') "
            " OR p.appurtenance LIKE '%%井%%'), p.county_code "
            "FROM cim.pipe_point p WHERE p.is_current AND (p.appurtenance IS NOT NULL OR p.node_type IS NOT NULL "
            "OR p.well_depth IS NOT NULL OR p.invert_z IS NOT NULL)" + pt_where + " ORDER BY p.id", pt_params)
        prows = cur.fetchall()
    seg = _segment_params(conn, srows)
    pts = _point_params(conn, prows)
    parts = [p for p in (seg, pts) if p is not None]
    if not parts:
        return Index("pipelines", np.zeros(0, "i1"), np.zeros(0, "i8"), np.zeros((0, 4)), np.zeros(0), np.zeros(0), {})
    keys = set().union(*(p.params for p in parts))
    cat = {k: np.concatenate([p.params.get(k, np.full(len(p), np.nan)) for p in parts]) for k in keys}
    return Index("pipelines", np.concatenate([p.kind for p in parts]), np.concatenate([p.ids for p in parts]),
                 np.concatenate([p.bbox for p in parts]), np.concatenate([p.zmin for p in parts]),
                 np.concatenate([p.zmax for p in parts]), cat)


def _segment_params(conn, rows: list) -> Index | None:
    if not rows:
        return None
    n = len(rows)
    ids = np.array([r[0] for r in rows], dtype="i8")
    bbox = np.column_stack([_f(rows, i) for i in range(1, 5)])
    sz, ez, sd, ed, dia, wid, hei = (_f(rows, i) for i in range(5, 12))
    x0, y0, x1, y1 = (_f(rows, i) for i in range(14, 18))
    z_ref = np.array([r[18] for r in rows], dtype=object)
    shape = np.array([r[19] or "" for r in rows], dtype=object)
    rect = (wid > 0) & (hei > 0) & (shape != "circle")
    dia = np.where(dia > 0, dia, DEFAULT_DIAMETER_MM)
    hw = np.where(rect, wid, dia) / 2000.0
    hh = np.where(rect, hei, dia) / 2000.0
    counties = _counties(rows, 20)
    g0 = _ground(_f(rows, 12), conn, x0, y0, counties)
    g1 = _ground(_f(rows, 13), conn, x1, y1, counties)
    c = []
    for z, d, g in ((sz, sd, g0), (ez, ed, g1)):
        known = ~np.isnan(z) | ~np.isnan(d)
        ref = np.where(~np.isnan(z), z, g - np.nan_to_num(d))
        c.append(np.where(known, _centre(ref, z_ref, hh), g - DEFAULT_COVER_M - hh))
    zmin = np.minimum(c[0], c[1]) - hh
    zmax = np.maximum(c[0], c[1]) + hh
    return Index("pipelines", np.zeros(n, "i1"), ids, bbox, zmin, zmax,
                 {"z0": c[0], "z1": c[1], "hw": hw, "hh": hh, "rect": rect.astype("f8")})


def _cover_radius(text: str | None) -> float:
    """Well radius from the cover size (Φ700 → 0.35 m, 600x600 → 0.30 m); 0.5 m when unknown."""
    if text:
        m = _NUM.search(text)
        if m:
            mm = float(m.group(1))
            if 200 <= mm <= 3000:
                return mm / 2000.0
    return 0.5


def _point_params(conn, rows: list) -> Index | None:
    if not rows:
        return None
    n = len(rows)
    ids = np.array([r[0] for r in rows], dtype="i8")
    x, y = _f(rows, 1), _f(rows, 2)
    ground = _ground(_f(rows, 3), conn, x, y, _counties(rows, 9))
    wd, dep, inv = _f(rows, 4), _f(rows, 5), _f(rows, 6)
    well = np.array([bool(r[8]) for r in rows])
    radius = np.array([_cover_radius(r[7]) for r in rows])
    bottom = np.where(~np.isnan(inv), inv, ground - np.where(~np.isnan(wd), wd, DEFAULT_WELL_DEPTH_M))
    bottom = np.where(bottom < ground - 0.1, bottom, ground - 0.5)
    centre = np.where(~np.isnan(dep), ground - dep, ground + MARKER_HALF_M)
    top = np.where(well, ground, centre + MARKER_HALF_M)
    low = np.where(well, bottom, centre - MARKER_HALF_M)
    return Index("pipelines", np.ones(n, "i1"), ids, np.column_stack([x, y, x, y]), low, top,
                 {"well": well.astype("f8"), "radius": np.where(well, radius, MARKER_HALF_M)})


def load_index(conn, layer: str, catalog: Catalog) -> Index:
    """The index of a 3D layer (``buildings`` or ``pipelines``)."""
    return building_index(conn, catalog) if layer == "buildings" else pipeline_index(conn, catalog)


# ----------------------------------------------------------------------------- contents

def _colours(spec: LayerSpec, codes: list) -> np.ndarray:
    """RGBA per feature from the layer style (``color_by`` value, else its parent code before '-')."""
    st = spec.style

    def rgb(h: str) -> tuple[int, int, int, int]:
        return int(h[1:3], 16), int(h[3:5], 16), int(h[5:7], 16), 255

    default = rgb(st.color)
    table = {k: rgb(v) for k, v in st.colors.items()}
    out = [table.get(c, table.get(str(c).split("-")[0], default)) if c is not None else default for c in codes]
    return np.array(out, dtype="u1").reshape(-1, 4)


_DICT_TTL_S = 60.0
_dict_cache: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}


def _dictionaries(cur, spec: LayerSpec) -> dict[str, dict[str, str]]:
    """code → Chinese name of every dictionary the spec's attributes use (cached for a minute)."""
    out = {}
    dsn = cur.connection.dsn
    now = time.monotonic()
    for a in spec.attributes:
        if a.dictionary and a.dictionary not in out:
            hit = _dict_cache.get((dsn, a.dictionary))
            if hit is None or now - hit[0] > _DICT_TTL_S:
                cur.execute(f"SELECT code, name_zh FROM cim.{quote_ident(a.dictionary)}")
                hit = _dict_cache[(dsn, a.dictionary)] = (now, dict(cur.fetchall()))
            out[a.dictionary] = hit[1]
    return out


def _fetch(cur, spec: LayerSpec, ids: np.ndarray, geometry: bool) -> tuple[list, list[dict]]:
    """Geometries (WKB, when asked) and exposed attributes of the given ids, in the given order."""
    cols = ", ".join(f"t.{quote_ident(a.name)}" for a in spec.attributes)
    geom = ", ST_AsBinary(t.geom)" if geometry else ""
    cur.execute(f"SELECT t.id{geom}, {cols} FROM {spec.schema_name}.{quote_ident(spec.table_name)} t "
                f"WHERE t.id = ANY(%s)", (ids.tolist(),))
    rows = {r[0]: r for r in cur.fetchall()}
    if len(rows) != len(ids):   # rows deleted after the plan was made: the caller re-plans
        raise Conflict("数据已在生成瓦片时更新，请重新加载瓦片集",
                       "the data changed while the tile was being built; reload the tileset")
    ordered = [rows[i] for i in ids.tolist()]
    off = 2 if geometry else 1
    names = [a.name for a in spec.attributes]
    return ([bytes(r[1]) for r in ordered] if geometry else []), [dict(zip(names, r[off:], strict=True)) for r in ordered]


def _id_column(ids: np.ndarray) -> Column:
    """The feature id column: UINT32 while every id fits, else FLOAT64, which holds every id below
    2^53 exactly (ids of an instance with a tier identity start at its code × 10^10) and which
    CesiumJS reads as a Number, not a BigInt."""
    if len(ids) and int(ids.max()) > 0xFFFFFFFF:
        return Column("id", "id64", ids.astype("f8"), "feature id (row id of the layer table; an exact integer)")
    return Column("id", "id", ids.astype("u4"), "feature id (row id of the layer table)")


def _columns(spec: LayerSpec, ids: np.ndarray, attrs: list[dict], dicts: dict, extra: dict) -> list[Column]:
    kinds = {"text": "text", "date": "text", "int": "int", "float": "float", "bool": "bool"}
    cols = [_id_column(ids)]
    for a in spec.attributes:
        vals = [r[a.name] for r in attrs]
        cols.append(Column(a.name, kinds[a.type], vals, f"{a.label_zh} / {a.label_en}"))
        if a.dictionary:
            d = dicts.get(a.dictionary, {})
            cols.append(Column(a.name + "_zh", "text", [d.get(v, "") if v is not None else "" for v in vals],
                               f"{a.label_zh}（名称） / {a.label_en} (label)"))
    for name, (vals, desc) in extra.items():
        cols.append(Column(name, "float", np.round(vals, 3), desc))
    cols.append(Column("layer", "text", [spec.id] * len(ids), "layer id"))
    return cols


def building_primitives(conn, index: Index, frame: Frame, catalog: Catalog) -> list[Primitive]:
    """LOD1 mesh of the buildings of one tile, with their property table."""
    spec = catalog.get("buildings")
    with conn.cursor() as cur:
        wkb, attrs = _fetch(cur, spec, index.ids, geometry=True)
        dicts = _dictionaries(cur, spec)
    geoms = shapely.from_wkb(wkb)
    colours = _colours(spec, [a.get(spec.style.color_by) for a in attrs] if spec.style.color_by else [None] * len(attrs))
    mesh = Mesh()
    extrude(mesh, frame, geoms, index.params["base"], index.params["top"], colours)
    if mesh.empty:
        return []
    pos, nor, col, fid, idx = mesh.arrays()
    extra = {"ground_z_3d": (index.params["base"], "三维底面高程 / base elevation used in 3D (m)"),
             "height_3d": (index.params["top"] - index.params["base"], "三维高度 / height used in 3D (m)")}
    return [Primitive(pos, nor, col, fid, idx, "building", _columns(spec, index.ids, attrs, dicts, extra),
                      len(index.ids))]


def _segment_mesh(conn, index: Index, frame: Frame, spec: LayerSpec) -> Primitive | None:
    with conn.cursor() as cur:
        wkb, attrs = _fetch(cur, spec, index.ids, geometry=True)
        dicts = _dictionaries(cur, spec)
    geoms = shapely.from_wkb(wkb)
    xy, seg = shapely.get_coordinates(geoms, return_index=True)
    # centre-line elevation interpolated by horizontal distance along the segment
    k = np.cos(np.radians(xy[:, 1]))
    step = np.zeros(len(xy))
    same = np.zeros(len(xy), bool)
    same[1:] = seg[1:] == seg[:-1]
    step[1:] = np.hypot(np.diff(xy[:, 0]) * k[1:], np.diff(xy[:, 1]))
    step[~same] = 0.0
    along = np.cumsum(step)
    first = np.concatenate([[0], np.nonzero(~same[1:])[0] + 1])
    start_along = np.repeat(along[first], np.bincount(seg, minlength=len(geoms)))
    rel = along - start_along
    total = np.bincount(seg, weights=step, minlength=len(geoms))
    frac = np.divide(rel, total[seg], out=np.zeros_like(rel), where=total[seg] > 0)
    p = index.params
    z = p["z0"][seg] + frac * (p["z1"][seg] - p["z0"][seg])
    v = frame.enu(xy[:, 0], xy[:, 1], z)
    e0 = np.nonzero(same[1:])[0]
    e1, owner = e0 + 1, seg[e0]
    ok = np.linalg.norm(v[e1] - v[e0], axis=1) > 1e-4
    e0, e1, owner = e0[ok], e1[ok], owner[ok]
    colours = _colours(spec, [a.get(spec.style.color_by) for a in attrs])
    mesh = Mesh()
    rect = p["rect"][owner] > 0
    for sel, prof in ((~rect, CIRCLE), (rect, RECT)):
        o = owner[sel]
        tubes(mesh, v[e0[sel]], v[e1[sel]], p["hw"][o], p["hh"][o], prof, colours, o)
    if mesh.empty:
        return None
    extra = {"z_centre_start": (p["z0"], "起点中心高程 / centre-line elevation at start (m)"),
             "z_centre_end": (p["z1"], "终点中心高程 / centre-line elevation at end (m)")}
    positions, normals, colours_, feature_ids, indices = mesh.arrays()
    return Primitive(positions, normals, colours_, feature_ids, indices, "pipe_segment",
                     _columns(spec, index.ids, attrs, dicts, extra), len(index.ids))


def _point_mesh(conn, index: Index, frame: Frame, spec: LayerSpec) -> Primitive | None:
    with conn.cursor() as cur:
        _, attrs = _fetch(cur, spec, index.ids, geometry=False)
        dicts = _dictionaries(cur, spec)
    colours = _colours(spec, [a.get(spec.style.color_by) for a in attrs])
    x, y = index.bbox[:, 0], index.bbox[:, 1]
    top = frame.enu(x, y, index.zmax)
    bottom = frame.enu(x, y, index.zmin)
    p = index.params
    well = p["well"] > 0
    mesh = Mesh()
    fid = np.arange(len(index.ids))
    r = p["radius"]
    # wells: vertical cylinders ground → bottom; other appurtenances: small boxes (feature ids index all points)
    tubes(mesh, top[well], bottom[well], r[well], r[well], CIRCLE, colours, fid[well], caps=True)
    tubes(mesh, top[~well], bottom[~well], r[~well], r[~well], RECT, colours, fid[~well], caps=True)
    if mesh.empty:
        return None
    pos, nor, col, vf, idx = mesh.arrays()
    extra = {"z_top_3d": (index.zmax, "三维顶高程 / top elevation in 3D (m)"),
             "z_bottom_3d": (index.zmin, "三维底高程 / bottom elevation in 3D (m)")}
    return Primitive(pos, nor, col, vf, idx, "pipe_point", _columns(spec, index.ids, attrs, dicts, extra),
                     len(index.ids))


def pipeline_primitives(conn, index: Index, frame: Frame, catalog: Catalog) -> list[Primitive]:
    """Tubes of the segments and cylinders/markers of the points of one tile."""
    out = []
    seg = index.kind == 0
    if seg.any():
        prim = _segment_mesh(conn, index.subset(seg), frame, catalog.get("pipeline_segments"))
        if prim is not None:
            out.append(prim)
    if (~seg).any():
        prim = _point_mesh(conn, index.subset(~seg), frame, catalog.get("pipeline_points"))
        if prim is not None:
            out.append(prim)
    return out


def primitives(conn, index: Index, frame: Frame, catalog: Catalog) -> list[Primitive]:
    """Meshes and property tables of one tile of a 3D layer."""
    fn = building_primitives if index.layer == "buildings" else pipeline_primitives
    return fn(conn, index, frame, catalog)

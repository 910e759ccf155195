"""Generate the demo county delivery: the files a survey contractor hands over, plus a manifest.

Files (all in CGCS2000 3° GK CM 111E, EPSG:4546; shapefiles GBK without .cpg, lying LDID):
排水管线.zip (YSPOINT/YSLINE/WSPOINT/WSLINE with drainage-census columns), 给水管线.zip
(JSPOINT/JSLINE), 燃气管线.zip (RQPOINT/RQLINE), 路灯管线.zip (LDPOINT/LDLINE),
通信管线成果表.xlsx (TXPOINT / TXLINE sheets: X = northing, Y = easting, lines by point number),
房屋建筑调查.zip (房屋建筑), 园林绿地.zip (绿地), 路灯设施.zip (路灯), 行政区划.zip (行政区划),
道路中心线.zip (道路中心线), dem.tif (5 m DEM) and demo_manifest.json (files, counts, planted
defects, sample features); the health-check inputs 常住人口.xlsx and 建成区.geojson
(:mod:`demo.inputs`, loaded with ``cim healthcheck inputs``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from demo import defects as dfx
from demo import drainage, pressure, surface
from demo import hazards as hz
from demo import inputs as hc_inputs
from demo.town import COUNTY_CODE, SOURCE_EPSG, Town
from demo.writers import sha256, write_dem, write_shapefile_zip, write_xlsx

MANIFEST = "demo_manifest.json"
GENERATOR_VERSION = 1
# Rows per unit of scale, measured on the default town (used to size benchmark deliveries).
SEGMENTS_PER_SCALE = 4600
POINTS_PER_SCALE = 4600
SURVEY_UNIT = "演示测绘地理信息有限公司"
SURVEY_DAY = "2026-06-18"
GBK_NAMED_ZIPS = ("房屋建筑调查.zip", "园林绿地.zip", "路灯设施.zip", "行政区划.zip", "道路中心线.zip")   # Chinese member names, no UTF-8 flag
INGEST_ORDER = ["行政区划.zip", "排水管线.zip", "给水管线.zip", "燃气管线.zip", "路灯管线.zip", "通信管线成果表.xlsx",
                "房屋建筑调查.zip", "园林绿地.zip", "路灯设施.zip", "道路中心线.zip"]
HEALTHCHECK_YEAR = 2025     # the year of the demo's population and built-up inputs


def _scale_for(scale: float, segments: int | None, points: int | None) -> float:
    need = [scale]
    if segments:
        need.append(segments / SEGMENTS_PER_SCALE)
    if points:
        need.append(points / POINTS_PER_SCALE)
    return max(need)


def _frame(town: Town, pts: pd.DataFrame, lines: pd.DataFrame | None,
           others: pd.DataFrame | None = None) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame | None]:
    """Point and line frames in EPSG:4546; X = northing, Y = easting as in Chinese survey tables.

    Line ends are looked up in ``pts`` and then in ``others`` (another layer of the same
    delivery, for a line that joins the other system)."""
    w = np.round(town.to_world(pts[["x", "y"]].to_numpy()), 3)
    p = pts.drop(columns=["x", "y"]).copy()
    p.insert(2, "X", w[:, 1])
    p.insert(3, "Y", w[:, 0])
    p["探测单位"] = SURVEY_UNIT
    p["探测日期"] = SURVEY_DAY
    gp = gpd.GeoDataFrame(p, geometry=shapely.points(w), crs=SOURCE_EPSG)
    if lines is None:
        return gp, None
    if others is not None:
        w = np.r_[w, np.round(town.to_world(others[["x", "y"]].to_numpy()), 3)]
    keys = list(p["物探点号"]) + ([] if others is None else list(others["物探点号"]))
    idx = {k: i for i, k in reversed(list(enumerate(keys)))}
    a = np.array([idx[k] for k in lines["起点点号"]])
    b = np.array([idx.get(k, -1) for k in lines["终点点号"]])
    end = np.where((b >= 0)[:, None], w[np.maximum(b, 0)], w[a] + [20.0, 0.0])   # a missing end point: 20 m east
    coords = np.stack([w[a], end], axis=1)
    gl = gpd.GeoDataFrame(lines.drop(columns=["_u", "_v"]), geometry=shapely.linestrings(coords), crs=SOURCE_EPSG)
    return gp, gl


def _world_polys(town: Town, geoms) -> np.ndarray:
    return shapely.transform(np.asarray(geoms), lambda c: np.round(town.to_world(c), 3))


def _drainage(town: Town, rng: np.random.Generator, mode: str, found: list) -> tuple[list, dict]:
    ys_g, ws_g = drainage.build(town, "YS", rng), drainage.build(town, "WS", rng)
    hy = drainage.hydraulics(town, ys_g, "YS", rng)
    hw = drainage.hydraulics(town, ws_g, "WS", rng, below=(ys_g, hy))
    planted: dict = {}
    if mode != "none":
        e15, d15 = dfx.reverse_slope(ys_g, hy)
        e16, d16 = dfx.smaller_downstream(ys_g, hy, e15)
        k, w, d18 = dfx.cross_connection(ys_g, hy, ws_g, hw)
        found += [d15, d16, d18]
        planted = {"reverse_slope": e15, "smaller_downstream": e16}
    ysp, ysl = drainage.tables(town, ys_g, "YS", hy, rng)
    wsp, wsl = drainage.tables(town, ws_g, "WS", hw, rng)
    if mode != "none":
        row = ysl.iloc[[-1]].copy()
        row[["起点点号", "终点点号"]] = [ysp["物探点号"].iloc[k], wsp["物探点号"].iloc[w]]
        row[["起点埋深", "终点埋深"]] = [hy["ground"][k] - hy["invert"][k], hw["ground"][w] - hw["invert"][w]]
        row[["起点高程", "终点高程"]] = [hy["invert"][k], hw["invert"][w]]
        row[["管径", "所在道路", "管段长度"]] = ["300", ys_g.road[k], round(math.hypot(ys_g.x[k] - ws_g.x[w],
                                                                                 ys_g.y[k] - ws_g.y[w]), 2)]
        ysl = pd.concat([ysl, row], ignore_index=True)
        found[-1].row = len(ysl)
        orphan = wsp.iloc[[0]].copy()
        mid = [i for i, r in enumerate(ws_g.role) if r == "mid"][7]
        orphan[["物探点号", "图上点号"]] = f"WS{len(wsp) + 1:04d}"
        orphan[["x", "y"]] = [ws_g.x[mid] + 17.0, ws_g.y[mid] + 9.0]
        orphan["所在道路"] = ws_g.road[mid]
        wsp = pd.concat([wsp, orphan], ignore_index=True)
        found.append(dfx.orphan_point(wsp, "WS"))
        d15.row, d16.row = e15 + 1, e16 + 1
    frames = [_frame(town, ysp, ysl, others=wsp), _frame(town, wsp, wsl)]
    layers = [("YSPOINT", frames[0][0]), ("YSLINE", frames[0][1]), ("WSPOINT", frames[1][0]), ("WSLINE", frames[1][1])]
    return layers, {"ys_edges": len(ys_g.u), "planted_edges": planted, "ys_graph": ys_g, "hy": hy}


def _pressure(town: Town, net: str, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    g = pressure.build(town, net, rng)
    return pressure.tables(town, g, net, rng)


def _error_defects(jsp: pd.DataFrame, jsl: pd.DataFrame, rqp: pd.DataFrame, rql: pd.DataFrame, found: list) -> tuple:
    """Rejecting defects (errors mode): Q01, Q05, Q07."""
    dup = jsp.iloc[[10]].copy()
    dup["x"] += 1.5
    jsp = pd.concat([jsp, dup], ignore_index=True)
    found.append(dfx.Defect("Q01", "error", "给水管线.zip", "JSPOINT", dup["物探点号"].iloc[0], "物探点号",
                            "物探点号重复", "duplicate survey point number", row=len(jsp)))
    miss = jsl.iloc[[5]].copy()
    miss["终点点号"] = "JS9999"
    jsl = pd.concat([jsl, miss], ignore_index=True)
    found.append(dfx.Defect("Q05", "error", "给水管线.zip", "JSLINE", f"{miss['起点点号'].iloc[0]}-JS9999", "终点点号",
                            "管段终点点号在点表中不存在", "segment end point not in the point table", row=len(jsl)))
    same = rql.iloc[[3]].copy()
    same["终点点号"] = same["起点点号"]
    rql = pd.concat([rql, same], ignore_index=True)
    found.append(dfx.Defect("Q07", "error", "燃气管线.zip", "RQLINE", f"{same['起点点号'].iloc[0]}", "终点点号",
                            "管段起点与终点相同", "segment starts and ends at the same point", row=len(rql)))
    return jsp, jsl, rqp, rql


ADMIN_VERTEX_M = 50.0
"""Most metres between two vertices of a boundary, as surveyed boundaries have them. A boundary
edge kilometres long with no vertex between its ends is straight in the projected source but
stored in CGCS2000 degrees, where the straight line between the same ends runs up to tens of
metres away from it: which side of it a feature lies on would depend on the CRS it is cut in."""


def _dense_ring(coords: np.ndarray) -> np.ndarray:
    """A ring with vertices at most :data:`ADMIN_VERTEX_M` apart, each edge's new vertices
    interpolated from its lexicographically smaller end, so that the edge two neighbours share
    gets the same vertices in both (whichever way each ring runs)."""
    out = [coords[:1]]
    for a, b in zip(coords[:-1], coords[1:], strict=True):
        n = max(1, math.ceil(float(np.hypot(*(b - a))) / ADMIN_VERTEX_M))
        forward = tuple(a) <= tuple(b)
        lo, hi = (a, b) if forward else (b, a)
        inner = lo + (hi - lo) * (np.arange(1, n) / n)[:, None]
        out += [inner if forward else inner[::-1], b[None]]
    return np.round(np.concatenate(out), 3)


def _dense(poly):
    """:func:`_dense_ring` of every ring of a polygon or multipolygon."""
    if poly.geom_type == "MultiPolygon":
        return shapely.MultiPolygon([_dense(p) for p in poly.geoms])
    return shapely.Polygon(_dense_ring(np.asarray(poly.exterior.coords)),
                           [_dense_ring(np.asarray(r.coords)) for r in poly.interiors])


def _admin(town: Town) -> gpd.GeoDataFrame:
    rows = town.admin_areas()
    level = {"county": "区", "street": "街道", "community": "社区"}
    df = gpd.GeoDataFrame({
        "区划代码": [r["code"] for r in rows], "名称": [r["name"] for r in rows],
        "级别": ["乡镇" if r["name"].endswith("镇") else level[r["level"]] for r in rows],
        "上级代码": [r["parent"] for r in rows]},
        geometry=[_dense(g) for g in _world_polys(town, [r["geom"] for r in rows])], crs=SOURCE_EPSG)
    df["面积"] = np.round(df.geometry.area, 1)
    return df


def _community_of(town: Town, geoms: pd.Series) -> np.ndarray:
    """12-digit code of the community holding each footprint's centroid (local frame)."""
    comm = [r for r in town.admin_areas() if r["level"] == "community"]
    polys = np.array([r["geom"] for r in comm], dtype=object)
    codes = np.array([r["code"] for r in comm] + [None], dtype=object)
    pt, poly = shapely.STRtree(polys).query(shapely.centroid(geoms.to_numpy()), predicate="intersects")
    which = np.full(len(geoms), len(comm))
    which[pt] = poly
    return codes[which]


def _table_rows(frame: pd.DataFrame) -> tuple[list[str], list[list]]:
    """Header and rows of a frame for a workbook sheet (NaN → empty cell)."""
    clean = frame.astype(object).where(frame.notna(), None)
    return list(clean.columns), clean.to_numpy().tolist()


def _lonlat(town: Town, xy) -> list[float]:
    w = town.to_world(np.atleast_2d(xy))
    lon, lat = Transformer.from_crs(SOURCE_EPSG, 4490, always_xy=True).transform(w[:, 0], w[:, 1])
    return [[round(float(a), 7), round(float(b), 7)] for a, b in zip(lon, lat, strict=True)]


def _samples(town: Town, bld: pd.DataFrame, lights: pd.DataFrame, admin: gpd.GeoDataFrame) -> dict:
    """Known features other parts of the platform can test against."""
    named = bld[bld["名称"].fillna("").str.contains("小区")].iloc[0]
    c = shapely.centroid(named["geometry"])
    main = next(r for r in town.ns_roads if r.road_class == "主干路")
    ymid = (town.ys[2] + town.ys[3]) / 2
    community = admin[admin["级别"] == "社区"].iloc[0]
    return {
        "building": {"code": named["建筑编号"], "name": named["名称"], "floors": int(named["地上层数"]),
                     "lonlat": _lonlat(town, [c.x, c.y])[0]},
        "streetlight": {"pole_no": lights["灯杆编号"].iloc[0], "road": lights["道路名称"].iloc[0]},
        "community": {"code": community["区划代码"], "name": community["名称"]},
        "section": {"road": main.name, "line_lonlat": _lonlat(town, [[main.pos - 30, ymid], [main.pos + 30, ymid]]),
                    "networks_crossed": ["YS", "WS", "RQ", "JS", "TX", "LD"]},
    }


@dataclass
class _Parts:
    """Everything generated, before it is written."""

    layers: dict[str, list] = field(default_factory=dict)      # zip name → [(layer name, frame)]
    tx: tuple[pd.DataFrame, pd.DataFrame] | None = None          # the XLSX point/line tables
    found: list = field(default_factory=list)                   # planted defects
    extra: dict = field(default_factory=dict)                   # admin, buildings, lights, green


def _build(town: Town, rng: np.random.Generator, defects: str, buildings: int | None, echo,
           hazards: int = 0) -> _Parts:
    """Generate every layer in a fixed order (the order of random draws makes the bytes)."""
    parts = _Parts()
    admin = _admin(town)
    parts.layers["行政区划.zip"] = [("行政区划", admin)]
    echo("排水管线 / drainage")
    parts.layers["排水管线.zip"], _ = _drainage(town, rng, defects, parts.found)
    echo("给水、燃气、通信 / water, gas, telecom")
    jsp, jsl = _pressure(town, "JS", rng)
    rqp, rql = _pressure(town, "RQ", rng)
    parts.tx = _pressure(town, "TX", rng)
    if defects == "errors":
        jsp, jsl, rqp, rql = _error_defects(jsp, jsl, rqp, rql, parts.found)
    parts.layers["给水管线.zip"] = list(zip(("JSPOINT", "JSLINE"), _frame(town, jsp, jsl), strict=True))
    parts.layers["燃气管线.zip"] = list(zip(("RQPOINT", "RQLINE"), _frame(town, rqp, rql), strict=True))
    echo("路灯 / streetlights")
    lights, cable = surface.streetlights(town, rng)
    ldp, ldl = surface.cable_tables(town, cable, rng)
    parts.layers["路灯管线.zip"] = list(zip(("LDPOINT", "LDLINE"), _frame(town, ldp, ldl), strict=True))
    lw = np.round(town.to_world(lights[["x", "y"]].to_numpy()), 3)
    parts.layers["路灯设施.zip"] = [("路灯", gpd.GeoDataFrame(lights.drop(columns=["x", "y"]),
                                                          geometry=shapely.points(lw), crs=SOURCE_EPSG))]
    echo("房屋、绿地 / buildings, green space")
    uses = surface.block_uses(town, rng)
    green, reserved = surface.green_spaces(town, uses, rng)
    bld = surface.buildings(town, uses, reserved, rng, buildings)
    bld.insert(len(bld.columns) - 1, "社区代码", _community_of(town, bld["geometry"]))
    if defects != "none":
        parts.found += dfx.building_defects(bld, rng)
    parts.layers["房屋建筑调查.zip"] = [("房屋建筑", gpd.GeoDataFrame(
        bld.drop(columns="geometry"), geometry=_world_polys(town, bld["geometry"]), crs=SOURCE_EPSG))]
    if hazards:
        echo(f"燃气隐患 / gas hazards: {hazards} × G01, G02, G03")
        rqp, rql, planted = hz.plant(town, rqp, rql, jsp, jsl, bld, hazards)
        parts.layers["燃气管线.zip"] = list(zip(("RQPOINT", "RQLINE"), _frame(town, rqp, rql), strict=True))
        parts.extra["hazards"] = planted
    parts.layers["园林绿地.zip"] = [("绿地", gpd.GeoDataFrame(
        green.drop(columns="geometry"), geometry=_world_polys(town, green["geometry"]), crs=SOURCE_EPSG))]
    parts.layers["道路中心线.zip"] = [("道路中心线", hc_inputs.roads(town))]
    parts.extra.update(admin=admin, buildings=bld, lights=lights, green=green)
    return parts


def _write_files(out: Path, town: Town, parts: _Parts, echo) -> list[dict]:
    """Write the delivery files in ingest order; one manifest entry per file."""
    files = []
    for name in INGEST_ORDER:
        path = out / name
        if name.endswith(".xlsx"):
            txp, txl = parts.tx
            tp, _ = _frame(town, txp, None)
            write_xlsx(path, [("TXPOINT", *_table_rows(pd.DataFrame(tp.drop(columns="geometry")))),
                              ("TXLINE", *_table_rows(txl.drop(columns=["_u", "_v"])))])
            counts = {"TXPOINT": len(txp), "TXLINE": len(txl)}
        else:
            write_shapefile_zip(path, parts.layers[name], gbk_names=name in GBK_NAMED_ZIPS)
            counts = {lname: len(f) for lname, f in parts.layers[name]}
        files.append({"name": name, "sha256": sha256(path), "bytes": path.stat().st_size, "layers": counts})
        echo(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return files


def _write_dem_file(out: Path, town: Town) -> tuple[dict, np.ndarray, np.ndarray]:
    """dem.tif over the town and 300–400 m around it (the river valley included)."""
    corners = town.to_world(np.array([[-300, -400], [town.width + 300, -400], [town.width + 300, town.height + 300],
                                      [-300, town.height + 300]]))
    lo, hi = np.floor(corners.min(0) / 10) * 10, np.ceil(corners.max(0) / 10) * 10
    path = out / "dem.tif"
    dem = write_dem(path, town.ground, town.to_local, (lo[0], lo[1], hi[0], hi[1]), SOURCE_EPSG)
    return {"name": "dem.tif", "sha256": sha256(path), "bytes": path.stat().st_size, "raster": dem}, lo, hi


def generate(out: Path, *, seed: int = 7, scale: float = 1.0, buildings: int | None = None,
             segments: int | None = None, points: int | None = None, defects: str = "warnings",
             echo=lambda msg: None, hazards: int = 0) -> dict:
    """Write the demo delivery into ``out`` and return its manifest (also saved as demo_manifest.json).

    ``hazards``: plant that many gas hazards of each of G01, G02 and G03 (:mod:`demo.hazards`,
    for the hazard-scan benchmark); 0, the default, plants none and leaves every byte as it was."""
    if defects not in dfx.MODES:
        raise ValueError(f"defects must be one of {dfx.MODES}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    town = Town(seed=seed, scale=_scale_for(scale, segments, points))
    parts = _build(town, np.random.default_rng(seed), defects, buildings, echo, hazards)
    files = _write_files(out, town, parts, echo)
    echo("DEM")
    dem, lo, hi = _write_dem_file(out, town)
    files.append(dem)
    x = parts.extra
    hc_inputs.population(x["admin"], x["buildings"], out / hc_inputs.POPULATION_FILE, HEALTHCHECK_YEAR)
    hc_inputs.builtup(town, out / hc_inputs.BUILTUP_FILE, HEALTHCHECK_YEAR)
    seg = sum(v for f in files for k, v in f.get("layers", {}).items() if k.endswith("LINE"))
    pts = sum(v for f in files for k, v in f.get("layers", {}).items() if k.endswith("POINT"))
    box = shapely.box(*town.county_polygon().bounds)
    manifest = {
        "generator": "cim demo generate", "version": GENERATOR_VERSION, "seed": seed, "scale": round(town.scale, 4),
        "defect_mode": defects, "county_code": COUNTY_CODE, "source_crs": f"EPSG:{SOURCE_EPSG}",
        "town_extent_local_m": [round(town.width, 1), round(town.height, 1)],
        "bbox_4546": [round(float(v), 3) for v in (*lo, *hi)],
        "town_lonlat_bbox": _lonlat(town, [[0, -100], [town.width, town.height]]),
        "county_lonlat_bbox": _lonlat(town, np.asarray(box.exterior.coords)[[0, 2]]),
        "counts": {"pipe_segments": seg, "pipe_points": pts, "buildings": len(x["buildings"]),
                   "streetlights": len(x["lights"]), "green_spaces": len(x["green"]), "admin_areas": len(x["admin"])},
        "ingest_order": INGEST_ORDER + ["dem.tif"], "files": files,
        "healthcheck_inputs": [hc_inputs.POPULATION_FILE, hc_inputs.BUILTUP_FILE], "healthcheck_year": HEALTHCHECK_YEAR,
        "defects": [d.to_dict() for d in parts.found],
        "samples": _samples(town, x["buildings"], x["lights"], x["admin"]),
    }
    if hazards:
        manifest["hazards"] = x["hazards"]
    (out / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return manifest

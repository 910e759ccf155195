"""The demo county's road centre lines and its health-check inputs, in the forms a county hands over.

* 道路中心线 (in ``道路中心线.zip``, ingested like any delivery): the street grid's centre lines
  split at the junctions, with 道路名称, 道路等级 (主干路/次干路), 道路宽度 and 车道数;
* ``常住人口.xlsx``: 行政区划代码, 名称, 常住人口, 年份 for the county, its streets and
  communities, estimated from the residential floor area of the buildings (36.5 m² per resident,
  the 2020 census's urban floor area per person): synthetic, for the demo and the benchmark only;
* ``建成区.geojson``: the town's extent (the street grid and 50 m around it) as the built-up area.

The last two are loaded with ``cim healthcheck inputs``.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from demo.town import COUNTY_CODE, ROAD_CLASS_CODE, SOURCE_EPSG, Town
from demo.writers import write_xlsx

FLOOR_AREA_PER_RESIDENT_M2 = 36.5
LANES = {"主干路": 6, "次干路": 4}
POPULATION_FILE = "常住人口.xlsx"
BUILTUP_FILE = "建成区.geojson"


def roads(town: Town) -> gpd.GeoDataFrame:
    """The grid's centre lines, one segment per block face (EPSG:4546)."""
    rows, geoms = [], []
    for road in town.ns_roads:
        for y0, y1 in zip(town.ys[:-1], town.ys[1:], strict=True):
            rows.append((road.name, road.road_class, road.width, LANES[road.road_class]))
            geoms.append(shapely.LineString(np.round(town.to_world(np.array([[road.pos, y0], [road.pos, y1]])), 3)))
    for road in town.ew_roads:
        for x0, x1 in zip(town.xs[:-1], town.xs[1:], strict=True):
            rows.append((road.name, road.road_class, road.width, LANES[road.road_class]))
            geoms.append(shapely.LineString(np.round(town.to_world(np.array([[x0, road.pos], [x1, road.pos]])), 3)))
    assert {r[1] for r in rows} <= set(ROAD_CLASS_CODE)
    return gpd.GeoDataFrame({"道路名称": [r[0] for r in rows], "道路等级": [r[1] for r in rows],
                             "道路宽度": [float(r[2]) for r in rows], "车道数": [r[3] for r in rows]},
                            geometry=geoms, crs=SOURCE_EPSG)


def population(admin: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame, out: Path, year: int) -> dict[str, int]:
    """Residents per community (its residential floor area ÷ 36.5 m²), street and county."""
    homes = buildings[buildings["用途"] == "住宅"]
    area = homes.groupby("社区代码")["建筑面积"].sum()
    parents = dict(zip(admin["区划代码"], admin["上级代码"], strict=True))
    names = dict(zip(admin["区划代码"], admin["名称"], strict=True))
    by_code: dict[str, int] = {}
    for code in admin.loc[admin["级别"] == "社区", "区划代码"]:
        n = int(round(float(area.get(code, 0.0)) / FLOOR_AREA_PER_RESIDENT_M2))
        by_code[code] = n
        by_code[parents[code]] = by_code.get(parents[code], 0) + n
        by_code[COUNTY_CODE] = by_code.get(COUNTY_CODE, 0) + n
    rows = [[code, names.get(code), by_code[code], year] for code in sorted(by_code, key=lambda c: (len(c), c))]
    write_xlsx(out, [("常住人口", ["行政区划代码", "名称", "常住人口", "年份"], rows)])
    return by_code


def builtup(town: Town, out: Path, year: int) -> None:
    """The town's extent (the street grid and 50 m around it) as the built-up area (EPSG:4546)."""
    ring = town.to_world(np.array([[-50, -150], [town.width + 50, -150], [town.width + 50, town.height + 50],
                                   [-50, town.height + 50], [-50, -150]]))
    doc = {"type": "FeatureCollection",
           "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{SOURCE_EPSG}"}},
           "features": [{"type": "Feature", "properties": {"名称": "演示镇建成区", "年份": year},
                         "geometry": {"type": "Polygon", "coordinates": [ring.round(3).tolist()]}}]}
    out.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")

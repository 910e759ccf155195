"""Health-check inputs for a generated demo county: road centre lines, resident population, built-up area.

    .venv/bin/python scripts/demo_healthcheck.py DEMO_DIR [--year 2025]

Reads ``demo_manifest.json`` (seed and scale of the town) and the delivered building and admin
shapefiles of ``cim demo generate``, and writes next to them, in the forms a county hands over:

* ``道路中心线.zip``: the street grid's centre lines split at the junctions (道路名称, 道路等级
  主干路/次干路, 道路宽度, 车道数; GBK shapefile, EPSG:4546), loaded with ``cim ingest``;
* ``常住人口.xlsx``: 行政区划代码, 名称, 常住人口, 年份 for the county, its streets and communities,
  estimated from the residential floor area of the buildings (36.5 m² per resident, the 2020
  census's urban floor area per person): synthetic, for the demo and the benchmark only;
* ``建成区.geojson``: the town's extent as the built-up area (EPSG:4546, 年份).

The last two are loaded with ``cim healthcheck inputs``.
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from openpyxl import Workbook

from ingest.demo.town import COUNTY_CODE, ROAD_CLASS_CODE, SOURCE_EPSG, Town

FLOOR_AREA_PER_RESIDENT_M2 = 36.5
LANES = {"主干路": 6, "次干路": 4}


def roads(town: Town, out: Path) -> Path:
    """The grid's centre lines, one segment per block face, as a zipped GBK shapefile."""
    rows, geoms = [], []
    for road in town.ns_roads:
        for y0, y1 in zip(town.ys[:-1], town.ys[1:], strict=True):
            rows.append((road.name, road.road_class, road.width, LANES[road.road_class]))
            geoms.append(shapely.LineString(town.to_world(np.array([[road.pos, y0], [road.pos, y1]]))))
    for road in town.ew_roads:
        for x0, x1 in zip(town.xs[:-1], town.xs[1:], strict=True):
            rows.append((road.name, road.road_class, road.width, LANES[road.road_class]))
            geoms.append(shapely.LineString(town.to_world(np.array([[x0, road.pos], [x1, road.pos]]))))
    frame = gpd.GeoDataFrame({"道路名称": [r[0] for r in rows], "道路等级": [r[1] for r in rows],
                              "道路宽度": [r[2] for r in rows], "车道数": [r[3] for r in rows]},
                             geometry=geoms, crs=SOURCE_EPSG)
    folder = out.parent / "_roads"
    folder.mkdir(exist_ok=True)
    frame.to_file(folder / "道路中心线.shp", engine="pyogrio", encoding="GBK")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for part in sorted(folder.iterdir()):
            zf.write(part, part.name)
            part.unlink()
    folder.rmdir()
    assert set(ROAD_CLASS_CODE) >= set(frame["道路等级"])
    return out


def population(demo: Path, out: Path, year: int) -> Path:
    """Residents per community, street and county from the residential floor area."""
    admin = gpd.read_file(f"/vsizip/{demo / '行政区划.zip'}", engine="pyogrio", encoding="GBK")
    build = gpd.read_file(f"/vsizip/{demo / '房屋建筑调查.zip'}", engine="pyogrio", encoding="GBK",
                          columns=["用途", "建筑面积"])
    homes = build[build["用途"] == "住宅"]
    points = shapely.point_on_surface(homes.geometry.to_numpy())
    communities = admin[admin["级别"] == "社区"].reset_index(drop=True)
    tree = shapely.STRtree(communities.geometry.to_numpy())
    hit_p, hit_c = tree.query(points, predicate="within")
    area = np.bincount(hit_c, weights=homes["建筑面积"].to_numpy()[hit_p], minlength=len(communities))
    people = np.round(area / FLOOR_AREA_PER_RESIDENT_M2).astype(int)
    by_code = dict(zip(communities["区划代码"], people, strict=True))
    parents = dict(zip(admin["区划代码"], admin["上级代码"], strict=True))
    for code, n in list(by_code.items()):
        street = parents[code]
        by_code[street] = by_code.get(street, 0) + n
        by_code[COUNTY_CODE] = by_code.get(COUNTY_CODE, 0) + n
    names = dict(zip(admin["区划代码"], admin["名称"], strict=True))
    wb = Workbook()
    ws = wb.active
    ws.title = "常住人口"
    ws.append(["行政区划代码", "名称", "常住人口", "年份"])
    for code in sorted(by_code, key=lambda c: (len(c), c)):
        ws.append([code, names.get(code), int(by_code[code]), year])
    wb.save(out)
    return out


def builtup(town: Town, out: Path, year: int) -> Path:
    """The town's extent (the street grid and 50 m around it) as the built-up area."""
    ring = town.to_world(np.array([[-50, -150], [town.width + 50, -150], [town.width + 50, town.height + 50],
                                   [-50, town.height + 50], [-50, -150]]))
    doc = {"type": "FeatureCollection",
           "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{SOURCE_EPSG}"}},
           "features": [{"type": "Feature", "properties": {"名称": "演示镇建成区", "年份": year},
                         "geometry": {"type": "Polygon", "coordinates": [ring.round(3).tolist()]}}]}
    out.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return out


def main() -> None:
    """Write the three files into the demo directory."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo", type=Path)
    ap.add_argument("--year", type=int, default=2025)
    args = ap.parse_args()
    manifest = json.loads((args.demo / "demo_manifest.json").read_text(encoding="utf-8"))
    town = Town(seed=manifest["seed"], scale=manifest["scale"])
    for path in (roads(town, args.demo / "道路中心线.zip"), population(args.demo, args.demo / "常住人口.xlsx", args.year),
                 builtup(town, args.demo / "建成区.geojson", args.year)):
        print(path)


if __name__ == "__main__":
    main()

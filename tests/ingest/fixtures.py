"""Builders of delivery files for the ingest tests (and benchmarks): generated at run time.

Coordinates sit around 29.04N 111.69E in CGCS2000 3° GK CM 111E (EPSG:4546): easting
≈ 567 000 m, northing ≈ 3 214 000 m. Helpers write shapefiles the way county contractors hand
them over (GBK attributes, no .cpg, a DBF language byte claiming Windows-1252), survey tables
(XLSX/CSV), and hostile zips (path traversal, zip bombs, symlinks, Chinese member names).
"""

from __future__ import annotations

import secrets
import stat
import warnings
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from openpyxl import Workbook

E0, N0 = 567_000.0, 3_214_000.0          # EPSG:4546 near 111.69E 29.04N
EPSG_GK = 4546
ESRI_GK_CM111 = (
    'PROJCS["CGCS2000_3_Degree_GK_CM_111E",GEOGCS["GCS_China_Geodetic_Coordinate_System_2000",'
    'DATUM["D_China_2000",SPHEROID["CGCS2000",6378137.0,298.257222101]],PRIMEM["Greenwich",0.0],'
    'UNIT["Degree",0.0174532925199433]],PROJECTION["Gauss_Kruger"],PARAMETER["False_Easting",500000.0],'
    'PARAMETER["False_Northing",0.0],PARAMETER["Central_Meridian",111.0],PARAMETER["Scale_Factor",1.0],'
    'PARAMETER["Latitude_Of_Origin",0.0],UNIT["Meter",1.0]]')
ESRI_CGCS2000_GEO = (
    'GEOGCS["GCS_China_Geodetic_Coordinate_System_2000",DATUM["D_China_2000",'
    'SPHEROID["CGCS2000",6378137.0,298.257222101]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]]')
LDID_CP1252 = 0x57


def write_shapefile(folder: Path, name: str, frame: pd.DataFrame, geoms, *, epsg: int | None = EPSG_GK,
                    prj: str | None = None, encoding: str = "GBK", cpg: bool = False,
                    ldid: int | None = LDID_CP1252) -> Path:
    """Write ``name.shp`` (+ .shx .dbf [.prj] [.cpg]); the DBF's language byte is overwritten
    with ``ldid`` (default: Windows-1252, as real GBK files often claim)."""
    folder.mkdir(parents=True, exist_ok=True)
    gdf = gpd.GeoDataFrame(frame.reset_index(drop=True), geometry=list(geoms), crs=None)
    path = folder / f"{name}.shp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # no CRS on purpose: the .prj is written below
        gdf.to_file(path, driver="ESRI Shapefile", engine="pyogrio", encoding=encoding)
    for ext in (".cpg", ".prj"):
        path.with_suffix(ext).unlink(missing_ok=True)
    if cpg:
        path.with_suffix(".cpg").write_text(encoding)
    if prj is not None:
        path.with_suffix(".prj").write_text(prj)
    elif epsg is not None:
        from pyproj import CRS
        path.with_suffix(".prj").write_text(CRS.from_epsg(epsg).to_wkt("WKT1_ESRI"))
    if ldid is not None:
        with path.with_suffix(".dbf").open("r+b") as fh:
            fh.seek(29)
            fh.write(bytes([ldid]))
    return path


def network(n_points: int = 6, *, prefix: str = "YS", spacing: float = 30.0, e0: float = E0, n0: float = N0,
            ground: float = 50.0, slope: float = 0.005, diameter: int = 300) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A straight gravity drain running east: point table and line table (CJJ 61 Chinese fields).

    Ground falls ``slope`` per metre; invert = ground − 1.5 m; lines run downstream to an
    outfall (特征 出水口) at the last point; the other points are 检查井.
    """
    i = np.arange(n_points)
    e = e0 + i * spacing
    gz = ground - i * spacing * slope
    pts = pd.DataFrame({
        "物探点号": [f"{prefix}{k + 1}" for k in i], "X": np.full(n_points, n0), "Y": e,
        "地面高程": gz.round(3), "特征": ["" for _ in i[:-1]] + ["出水口"], "附属物": ["检查井" for _ in i[:-1]] + [""],
        "井深": np.full(n_points, 1.5)})
    inv = gz - 1.5
    lines = pd.DataFrame({
        "起点点号": [f"{prefix}{k + 1}" for k in i[:-1]], "终点点号": [f"{prefix}{k + 2}" for k in i[:-1]],
        "起点埋深": np.full(n_points - 1, 1.5), "终点埋深": np.full(n_points - 1, 1.5),
        "起点高程": inv[:-1].round(3), "终点高程": inv[1:].round(3), "管径": [str(diameter)] * (n_points - 1),
        "材质": ["钢筋混凝土"] * (n_points - 1), "埋设方式": ["直埋"] * (n_points - 1)})
    return pts, lines


def point_geoms(pts: pd.DataFrame) -> np.ndarray:
    """Point geometries (easting, northing) of a CJJ 61 point table (X = northing)."""
    return shapely.points(pts["Y"].to_numpy(float), pts["X"].to_numpy(float))


def line_geoms(pts: pd.DataFrame, lines: pd.DataFrame) -> np.ndarray:
    """Line geometries joining the points named by 起点点号 / 终点点号."""
    idx = pd.Index(pts["物探点号"])
    a = idx.get_indexer(lines["起点点号"])
    b = idx.get_indexer(lines["终点点号"])
    e, n = pts["Y"].to_numpy(float), pts["X"].to_numpy(float)
    coords = np.stack([np.column_stack([e[a], n[a]]), np.column_stack([e[b], n[b]])], axis=1)
    return shapely.linestrings(coords)


def write_network_shapefiles(folder: Path, prefix: str = "YS", **kw) -> tuple[Path, Path]:
    """``<prefix>POINT.shp`` and ``<prefix>LINE.shp`` of a small network (GBK, lying LDID, .prj)."""
    pts, lines = network(prefix=prefix)
    p = write_shapefile(folder, f"{prefix}POINT", pts, point_geoms(pts), **kw)
    q = write_shapefile(folder, f"{prefix}LINE", lines, line_geoms(pts, lines), **kw)
    return p, q


def write_xlsx(path: Path, sheets: dict[str, pd.DataFrame]) -> Path:
    """A workbook with one sheet per frame (header row then values)."""
    wb = Workbook(write_only=True)
    for name, frame in sheets.items():
        ws = wb.create_sheet(name)
        ws.append([str(c) for c in frame.columns])
        for row in frame.itertuples(index=False):
            ws.append([None if (isinstance(v, float) and np.isnan(v)) else (v.item() if hasattr(v, "item") else v)
                       for v in row])
    wb.save(path)
    return path


def zip_folder(folder: Path, path: Path, *, utf8_names: bool = True, arc_prefix: str = "") -> Path:
    """Zip every file of ``folder``. Without ``utf8_names`` member names are stored as GBK bytes
    without the UTF-8 flag, as Chinese Windows zip tools do."""
    files = [f for f in sorted(folder.rglob("*")) if f.is_file()]
    names = [arc_prefix + f.relative_to(folder).as_posix() for f in files]
    if utf8_names:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for f, name in zip(files, names, strict=True):
                zf.write(f, name)
        return path
    return zip_raw_names(path, {n.encode("gbk"): f.read_bytes() for f, n in zip(files, names, strict=True)})


def zip_raw_names(path: Path, members: dict[bytes, bytes]) -> Path:
    """A zip whose member names are the given bytes, stored without the UTF-8 flag (bit 11).

    Python's zipfile flags every non-ASCII name as UTF-8, so members are written under ASCII
    placeholders of the same byte length, which are then replaced in the finished archive.
    """
    placeholders = {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, (raw, data) in enumerate(members.items()):
            ph = (f"~{i}~" + secrets.token_hex(len(raw)))[: len(raw)]   # unique, never a substring
            assert len(ph) == len(raw) and len(raw) > len(f"~{i}~"), "name too short for a placeholder"
            placeholders[ph.encode()] = raw
            zf.writestr(ph, data)
    blob = path.read_bytes()
    for ph, raw in placeholders.items():
        assert blob.count(ph) == 2
        blob = blob.replace(ph, raw)
    path.write_bytes(blob)
    return path


def zip_entries(path: Path, entries: dict[str, bytes]) -> Path:
    """A zip with the given member names (traversal names are written verbatim)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def zip_with_symlink(path: Path, name: str = "link.shp", target: str = "/etc/passwd") -> Path:
    """A zip holding a symbolic link member."""
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo(name)
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)
    return path


def zip_bomb(path: Path, megabytes: int = 64) -> Path:
    """A small zip that expands to ``megabytes`` MB of zeros (ratio ≈ 1000:1)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("data.dbf", "w") as fh:
            block = b"\0" * (1 << 20)
            for _ in range(megabytes):
                fh.write(block)
    return path


def dbf_language_byte(path: Path) -> int:
    """The LDID byte of a DBF header."""
    with path.open("rb") as fh:
        fh.seek(29)
        return fh.read(1)[0]


def write_unprofiled_county(folder: Path, *, buildings: int = 60, points: int = 8, seed: int = 3,
                            structures: tuple[str, ...] = ("砖混", "框架", "钢混", "砖混结构")) -> Path:
    """A county delivery no profile was written for, zipped: ``JZ_buildings`` (建筑层数, 建筑结构,
    建成年代 holding years, 房屋用途), ``YS_PNT`` and the lines ``YS_LIN``, ``RQ_LIN``, ``JS_LIN``
    (起点点号/终点点号), GBK shapefiles in EPSG:4546 without .cpg."""
    rng = np.random.default_rng(seed)
    i = np.arange(buildings)
    x, y = E0 + (i % 20) * 40.0, N0 + 200 + (i // 20) * 40.0
    frame = pd.DataFrame({"建筑编号": [f"JZ{k:05d}" for k in i], "建筑层数": rng.integers(1, 30, buildings),
                          "建筑结构": rng.choice(list(structures), buildings),
                          "建成年代": rng.integers(1975, 2023, buildings), "房屋用途": rng.choice(["住宅", "商业"], buildings)})
    write_shapefile(folder, "JZ_buildings", frame, shapely.box(x, y, x + 20, y + 15))
    for k, prefix in enumerate(("YS", "RQ", "JS")):
        pts, lines = network(points, prefix=prefix, n0=N0 - 100 * k)
        if prefix == "YS":
            write_shapefile(folder, "YS_PNT", pts, point_geoms(pts))
        write_shapefile(folder, f"{prefix}_LIN", lines, line_geoms(pts, lines))
    return zip_folder(folder, folder.parent / f"{folder.name}.zip")


# A US county stormwater inventory as exported from a county GIS: inlets and conduits with the
# county's own field names, in a State Plane CRS in US survey feet. Two field-name styles seen
# in county exports: SWMM-like (US_NODE/DS_NODE, INVERT_UP/INVERT_DN, DIAMETER) and the
# structure style (UPSTRUCT/DNSTRUCT, UPINVERT/DNINVERT, SIZE1).
US_STORM_STYLES = {
    "node": {"crs": 2264, "origin": (2_106_778.0, 739_010.0),       # NAD83 / North Carolina (ftUS), Raleigh
             "start": "US_NODE", "end": "DS_NODE", "inv_up": "INVERT_UP", "inv_dn": "INVERT_DN",
             "size": "DIAMETER", "length": "LENGTH"},
    "struct": {"crs": 2278, "origin": (3_120_040.0, 13_841_753.0),  # NAD83 / Texas South Central (ftUS), Houston
               "start": "UPSTRUCT", "end": "DNSTRUCT", "inv_up": "UPINVERT", "inv_dn": "DNINVERT",
               "size": "SIZE1", "length": "SHAPE_LEN"},
}


def write_us_stormwater(folder: Path, style: str = "node", *, streets: int = 3, per_street: int = 6) -> Path:
    """Zipped ``Inlets`` (points: FACILITYID, INLETTYPE 'Curb Inlet' / 'Grate Inlet' / 'Drop Inlet',
    RIMELEV and INVERTELEV in feet, INSTALLDATE, OWNEDBY) and ``Conduits`` (lines from inlet to
    inlet downhill along each street: FACILITYID, upstream/downstream structure ids, inverts in
    feet, diameter in inches, MATERIAL RCP/PVC/HDPE/CMP and CPP — corrugated polyethylene, which
    the us-stormwater profile does not list —, length in feet) in a State Plane CRS
    (feet, with .prj), UTF-8 attributes with a .cpg."""
    st = US_STORM_STYLES[style]
    x0, y0 = st["origin"]
    n = streets * per_street
    i = np.arange(n)
    street, pos = i // per_street, i % per_street
    x, y = x0 + pos * 180.0, y0 + street * 400.0                    # feet: inlets 180 ft apart
    rim = 320.0 - pos * 1.5 - street * 0.5
    inlets = pd.DataFrame({"FACILITYID": [f"SI-{k:05d}" for k in i],
                           "INLETTYPE": np.array(["Curb Inlet", "Grate Inlet", "Drop Inlet"])[i % 3],
                           "RIMELEV": np.round(rim, 2), "INVERTELEV": np.round(rim - 5.0, 2),
                           "INSTALLDATE": [f"{1998 + k % 20}-06-01" for k in i], "OWNEDBY": "County"})
    write_shapefile(folder, "Inlets", inlets, shapely.points(x, y), epsg=st["crs"], encoding="UTF-8", cpg=True,
                    ldid=None)
    up = i[pos < per_street - 1]
    dn = up + 1
    m = len(up)
    length = np.hypot(x[dn] - x[up], y[dn] - y[up])
    conduits = pd.DataFrame({"FACILITYID": [f"SC-{k:05d}" for k in range(m)],
                             st["start"]: inlets["FACILITYID"].to_numpy()[up],
                             st["end"]: inlets["FACILITYID"].to_numpy()[dn],
                             st["inv_up"]: np.round(rim[up] - 5.0, 2), st["inv_dn"]: np.round(rim[dn] - 5.0, 2),
                             st["size"]: np.array([15, 18, 24])[street[up] % 3],
                             "MATERIAL": np.array(["RCP", "PVC", "HDPE", "CMP", "CPP"])[np.arange(m) % 5],
                             st["length"]: np.round(length, 2), "INSTALLDATE": [f"{2001 + k % 15}-03-15" for k in range(m)]})
    lines = shapely.linestrings(np.stack([np.column_stack([x[up], y[up]]), np.column_stack([x[dn], y[dn]])], axis=1))
    write_shapefile(folder, "Conduits", conduits, lines, epsg=st["crs"], encoding="UTF-8", cpg=True, ldid=None)
    return zip_folder(folder, folder.parent / f"{folder.name}.zip")


# A national administrative-boundary dataset: one layer per level with the names and codes of
# every level above it (省名/省代码, 市名/市代码, 县名/县代码), GBK, CGCS2000 lon/lat; its towns come
# from another source with English field names (NAME, PAC: the administrative code).
BOUNDARY_CITIES = [("湖南省", "430000", "长沙市", "430100", [("芙蓉区", "430102"), ("天心区", "430103")]),
                   ("湖南省", "430000", "常德市", "430700", [("武陵区", "430702"), ("鼎城区", "430703")])]


def write_national_boundaries(folder: Path, *, city_layer: str = "市级行政区", county_layer: str = "县级行政区",
                              town_layer: str = "乡镇街道", origin: tuple[float, float] = (111.5, 28.5),
                              size: float = 0.4) -> Path:
    """Zipped city, county and town polygons of :data:`BOUNDARY_CITIES` (each inside the one above
    it; cities ``size`` degrees square from ``origin``): cities with 省名/省代码/市名/市代码,
    counties with 县名/县代码 too, two towns per county with NAME and PAC; GBK without .cpg."""
    cities, counties, towns, city_geoms, county_geoms, town_geoms = [], [], [], [], [], []
    half = size / 2
    for k, (prov, prov_code, city, city_code, parts) in enumerate(BOUNDARY_CITIES):
        x0, y0 = origin[0] + k * size * 1.25, origin[1]
        cities.append({"省名": prov, "省代码": prov_code, "市名": city, "市代码": city_code})
        city_geoms.append(shapely.box(x0, y0, x0 + size, y0 + size))
        for j, (county, county_code) in enumerate(parts):
            counties.append({"省名": prov, "省代码": prov_code, "市名": city, "市代码": city_code, "县名": county,
                             "县代码": county_code})
            cx = x0 + j * half
            county_geoms.append(shapely.box(cx, y0, cx + half, y0 + size))
            for t in range(2):
                towns.append({"NAME": f"{county}第{t + 1}街道", "PAC": f"{county_code}{t + 1:03d}"})
                town_geoms.append(shapely.box(cx, y0 + t * half, cx + half, y0 + (t + 1) * half))
    write_shapefile(folder, city_layer, pd.DataFrame(cities), city_geoms, epsg=4490)
    write_shapefile(folder, county_layer, pd.DataFrame(counties), county_geoms, epsg=4490)
    write_shapefile(folder, town_layer, pd.DataFrame(towns), town_geoms, epsg=4490)
    return zip_folder(folder, folder.parent / f"{folder.name}.zip")

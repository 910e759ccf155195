"""Store a GeoTIFF digital elevation model: validate, copy under ``$CIM_HOME/dem/``, register.

``cim ingest dem.tif [--county CODE]`` dispatches ``*.tif`` / ``*.tiff`` here. The raster must be
readable by rasterio (GDAL), carry a CRS that PROJ knows and have at least one band; its footprint
is stored in EPSG:4490 so the map and the 3D builder can tell where it applies. The copy is named by
its SHA-256, so storing the same file twice reuses one copy. A DEM belongs to a county and replaces
only that county's previous DEM; without ``--county`` it is the county platform's own county
(``cim tier init``), else the DEM of the whole instance. Registration (the new row, the county's
previous DEM no longer current, the bytes for subscribers when this instance publishes the county,
the audit entry) is one transaction.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import psycopg2.extensions
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.warp import transform_bounds

from cim import auth, raster, tiers
from cim.auth import Principal
from cim.db import transaction
from cim.errors import CrsError, InvalidInput, UnreadableInput

log = logging.getLogger(__name__)

DEM_SUFFIXES = (".tif", ".tiff")


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def inspect_dem(path: Path) -> dict:
    """Open and check a DEM file; return its metadata or raise a bilingual error."""
    if not path.is_file():
        raise UnreadableInput(f"文件不存在：{path.name}", f"file not found: {path.name}")
    try:
        with rasterio.open(path) as src:
            if src.count < 1:
                raise UnreadableInput(f"{path.name} 没有波段", f"{path.name} has no raster band")
            if src.crs is None:
                raise CrsError(f"{path.name} 未定义坐标系，请在 GeoTIFF 中写入坐标系（如 EPSG:4490 或 EPSG:4547）",
                               f"{path.name} has no CRS; write one into the GeoTIFF (e.g. EPSG:4490 or EPSG:4547)")
            try:
                w, s, e, n = transform_bounds(src.crs, "EPSG:4490", *src.bounds, densify_pts=21)
            except Exception as exc:  # PROJ cannot use the CRS
                raise CrsError(f"{path.name} 的坐标系无法识别：{src.crs}",
                               f"{path.name} has a CRS PROJ cannot use: {src.crs}") from exc
            if not all(np.isfinite([w, s, e, n])) or not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
                raise CrsError(f"{path.name} 的范围换算到 CGCS2000 后无效，坐标系可能写错",
                               f"{path.name} bounds are invalid in CGCS2000; the CRS is probably wrong")
            band = src.read(1, masked=True)
            valid = band.compressed()
            return {
                "srid": src.crs.to_epsg(), "crs_wkt": src.crs.to_wkt(), "width": src.width, "height": src.height,
                "resolution_x": float(abs(src.res[0])), "resolution_y": float(abs(src.res[1])),
                "nodata": None if src.nodata is None else float(src.nodata),
                "min_z": float(valid.min()) if valid.size else None,
                "max_z": float(valid.max()) if valid.size else None,
                "bounds": [w, s, e, n],
            }
    except RasterioIOError as exc:
        raise UnreadableInput(f"{path.name} 不是可读取的栅格（GeoTIFF）文件",
                              f"{path.name} is not a readable raster (GeoTIFF) file") from exc


def _county(cur, county: str | None) -> str:
    """The county a DEM is stored for: the one given, else a county platform's own, else '' (the instance's)."""
    if county:
        county = str(county).strip()
        if not (county.isdigit() and len(county) in (6, 9, 12)):
            raise InvalidInput(f"行政区代码不合法：{county[:20]}", f"invalid county code: {county[:20]}")
        return county
    ident = tiers.identity(cur)
    return ident.code if ident is not None and ident.level == "county" else raster.INSTANCE


def store_dem(conn: psycopg2.extensions.connection, path: Path, *, principal: Principal, home: Path,
              county: str | None = None) -> dict:
    """Validate, copy and register a DEM as the current one of its county; returns the registered row."""
    path = Path(path)
    if path.suffix.lower() not in DEM_SUFFIXES:
        raise UnreadableInput(f"DEM 需为 GeoTIFF（.tif/.tiff）：{path.name}",
                              f"a DEM must be a GeoTIFF (.tif/.tiff): {path.name}")
    meta = inspect_dem(path)
    digest = _sha256(path)
    target_dir = Path(home).expanduser().resolve() / "dem"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{digest}.tif"
    created = not target.exists()
    if created:
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)
    try:
        with transaction(conn) as cur:
            county = _county(cur, county)
            if county:
                auth.authorize(principal, auth.Action.write, county=county)
                tiers.check_writable(cur, county)
            cur.execute("UPDATE cim.dem SET is_current = false WHERE is_current AND county_code = %s", (county,))
            w, s, e, n = meta["bounds"]
            cur.execute(
                "INSERT INTO cim.dem (name, file_path, sha256, srid, crs_wkt, width, height, resolution_x, "
                "resolution_y, nodata, min_z, max_z, bounds, loaded_by, county_code) VALUES (%s, %s, %s, %s, %s, %s, "
                "%s, %s, %s, %s, %s, %s, ST_MakeEnvelope(%s, %s, %s, %s, 4490), %s, %s) RETURNING id, loaded_at",
                (path.name, str(target), digest, meta["srid"], meta["crs_wkt"], meta["width"], meta["height"],
                 meta["resolution_x"], meta["resolution_y"], meta["nodata"], meta["min_z"], meta["max_z"],
                 w, s, e, n, principal.name, county))
            row = cur.fetchone()
            assert row is not None  # INSERT ... RETURNING
            dem_id, loaded_at = row
            if county and raster.publishes(cur, county):   # subscribers receive the bytes with the row
                raster.publish_dem_files(cur, county)
            auth.audit(cur, principal, "dem.store", target=f"dem/{dem_id}", county=county or None,
                       detail={"file": path.name, "sha256": digest, "srid": meta["srid"], "bounds": meta["bounds"]})
    except BaseException:
        if created:
            target.unlink(missing_ok=True)
        raise
    log.info("stored DEM %s as %s (id %s)", path.name, target, dem_id)
    return {"id": dem_id, "name": path.name, "file_path": str(target), "sha256": digest, "county_code": county,
            "loaded_at": loaded_at.isoformat(), **meta}

"""Coordinate reference system of a delivered layer: declared, repaired or inferred.

domain.md §2.1. The CRS a reader found (a ``.prj``, including ESRI WKT without an EPSG code,
parsed by :func:`ingest.readers.vector.parse_prj`) is honoured and identified with the Gauss-Krüger zones of ``cim.crs``; swapped axes (Chinese tables list
X = northing) are detected from the value ranges; a missing ``.prj`` is inferred from the
zone prefix of the eastings or, without one, from the county's longitude. A declared CRS whose
area of use does not contain the data is refused.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pyproj import CRS, Transformer

from cim.crs import STORAGE_SRID, GKZone, crs_from_epsg, gk_zones
from cim.errors import ConfigError, CrsError
from ingest.data import DATA_DIR, read_yaml

# Plausible ranges in metres / degrees for China (domain.md §2.1).
NORTHING = (300_000.0, 6_200_000.0)
PLAIN_EASTING = (100_000.0, 900_000.0)
CHINA_LON = (73.0, 136.0)
CHINA_LAT = (3.0, 54.0)
AREA_MARGIN_DEG = 0.5


@dataclass
class ResolvedCrs:
    """The CRS to read a layer with, whether to swap axes, and what the report must say."""

    crs: CRS
    label: str                       # "EPSG:4546" or the CRS name
    swapped: bool = False
    notes: list[tuple[str, str, str]] = field(default_factory=list)  # (topic, zh, en)
    pipeline: str | None = None      # PROJ pipeline to EPSG:4490 lon/lat when a datum shift applies

    @property
    def is_geographic(self) -> bool:
        """True for lon/lat CRSs."""
        return self.crs.is_geographic

    def unit_factor(self) -> float:
        """Metres per unit of the CRS's first axis (1 for metres, 0.3048 for feet)."""
        if self.crs.is_geographic:
            return 1.0
        return float(self.crs.axis_info[0].unit_conversion_factor or 1.0)


def _datum_of(crs: CRS) -> str | None:
    name = (crs.geodetic_crs.datum.name if crs.geodetic_crs else "").lower().replace("_", " ")
    if "2000" in name or "cgcs" in name or "china geodetic" in name:
        return "CGCS2000"
    if "xian" in name or "xi'an" in name or "1980" in name:
        return "Xian1980"
    if "beijing" in name or "1954" in name:
        return "Beijing1954"
    return None


def _tm_params(crs: CRS) -> dict[str, float] | None:
    op = crs.coordinate_operation
    if op is None or "transverse mercator" not in op.method_name.lower():
        return None
    out = {}
    for p in op.params:
        n = p.name.lower()
        if "longitude of natural origin" in n or "central meridian" in n:
            out["cm"] = p.value
        elif "false easting" in n:
            out["fe"] = p.value
        elif "scale factor" in n:
            out["k"] = p.value
    return out


def identify(crs: CRS) -> tuple[int | None, GKZone | None]:
    """EPSG code and GK zone of a CRS, matching ESRI WKT without codes by datum and parameters."""
    if crs.is_geographic:
        epsg = crs.to_epsg(min_confidence=70)
        if epsg is None and _datum_of(crs) == "CGCS2000":
            epsg = STORAGE_SRID
        return epsg, None
    epsg = crs.to_epsg(min_confidence=70)
    if epsg is not None:
        zone = next((z for z in gk_zones() if z.epsg == epsg), None)
        if zone is not None or crs.to_epsg(min_confidence=95) is not None:
            return epsg, zone
    params, datum = _tm_params(crs), _datum_of(crs)
    if params is None or datum is None or abs(params.get("k", 1.0) - 1.0) > 1e-9:
        return epsg, None
    prefixed = params.get("fe", 500_000.0) > 1_000_000
    cands = [z for z in gk_zones() if z.datum == datum and z.prefixed == prefixed
             and abs(z.central_meridian - params.get("cm", -999)) < 1e-6
             and abs(z.false_easting - params.get("fe", 0)) < 1e-3]
    cands.sort(key=lambda z: z.width)        # without a prefix 3° and 6° zones coincide: prefer 3°
    if cands:
        return cands[0].epsg, cands[0]
    return epsg, None


def _label(crs: CRS, epsg: int | None) -> str:
    return f"EPSG:{epsg}" if epsg else crs.name


def _bbox(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        raise CrsError("图层没有有效坐标", "the layer has no valid coordinates")
    return float(x[ok].min()), float(y[ok].min()), float(x[ok].max()), float(y[ok].max())


def _in(v0: float, v1: float, rng: tuple[float, float]) -> bool:
    return rng[0] <= v0 and v1 <= rng[1]


def _easting_kind(v0: float, v1: float) -> int | None:
    """0 for a plain GK easting range, the zone number for a zone-prefixed one, None otherwise."""
    if _in(v0, v1, PLAIN_EASTING):
        return 0
    z0, z1 = int(v0 // 1_000_000), int(v1 // 1_000_000)
    if z0 == z1 and (13 <= z0 <= 23 or 25 <= z0 <= 45) and _in(v0 - z0 * 1e6, v1 - z0 * 1e6, PLAIN_EASTING):
        return z0
    return None


def _looks_swapped_projected(b: tuple[float, float, float, float]) -> bool:
    x0, y0, x1, y1 = b
    x_east = _easting_kind(x0, x1) is not None and _in(y0, y1, NORTHING)
    y_east = _easting_kind(y0, y1) is not None and _in(x0, x1, NORTHING)
    return y_east and not x_east


def _looks_lonlat(b: tuple[float, float, float, float]) -> bool | None:
    """True for lon/lat, False for lat/lon (swapped), None when not degrees in China."""
    x0, y0, x1, y1 = b
    if _in(x0, x1, CHINA_LON) and _in(y0, y1, CHINA_LAT):
        return True
    if _in(y0, y1, CHINA_LON) and _in(x0, x1, CHINA_LAT):
        return False
    return None


@lru_cache(maxsize=64)
def transformer_to_storage(crs_wkt: str) -> Transformer:
    """Cached transformer from a CRS (by WKT) to EPSG:4490 lon/lat."""
    return Transformer.from_crs(CRS.from_wkt(crs_wkt), crs_from_epsg(STORAGE_SRID), always_xy=True)


def to_storage(x: np.ndarray, y: np.ndarray, crs: CRS) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised transform of source coordinates to EPSG:4490 lon/lat."""
    if crs.to_epsg() == STORAGE_SRID:
        return x, y
    return transformer_to_storage(crs.to_wkt()).transform(x, y)


# --- old datums to CGCS2000 (ingest/datum_shifts.yaml) ---------------------------------------

DATUM_SHIFTS = DATA_DIR / "datum_shifts.yaml"
OLD_DATUMS = {"Xian1980": ("西安80", "Xian 1980"), "Beijing1954": ("北京54", "Beijing 1954")}


class Plane4(BaseModel):
    """Plane 4-parameter transformation (survey convention: X north, Y east)."""

    model_config = ConfigDict(extra="forbid")

    dx: float
    dy: float
    rotation_arcsec: float = 0.0
    scale_ppm: float = 0.0


class DatumShift(BaseModel):
    """One entry of ``datum_shifts.yaml``."""

    model_config = ConfigDict(extra="forbid")

    counties: list[str] = Field(min_length=1)
    source: str
    helmert7: list[float] | None = Field(default=None, min_length=7, max_length=7)
    convention: Literal["position_vector", "coordinate_frame"] = "position_vector"
    plane4: Plane4 | None = None

    @model_validator(mode="after")
    def _one_method(self) -> DatumShift:
        if (self.helmert7 is None) == (self.plane4 is None):
            raise ValueError("give exactly one of helmert7 and plane4")
        return self


@lru_cache(maxsize=8)
def load_datum_shifts(path: str | None = None) -> dict[str, tuple[DatumShift, ...]]:
    """The datum-shift table (``ingest/datum_shifts.yaml`` unless another file is given)."""
    p = Path(path) if path else DATUM_SHIFTS
    try:
        data = read_yaml(p) or {}
        unknown = set(data) - set(OLD_DATUMS)
        if unknown:
            raise ValueError(f"unknown datums {sorted(unknown)}; expected {sorted(OLD_DATUMS)}")
        return {d: tuple(DatumShift.model_validate(e) for e in (data.get(d) or [])) for d in OLD_DATUMS}
    except Exception as exc:
        raise ConfigError(f"基准转换参数文件 {p.name} 无效：{exc}", f"invalid datum-shift file {p}: {exc}") from exc


def _shift_for(datum: str, county: str | None, shifts: dict[str, tuple[DatumShift, ...]]) -> DatumShift | None:
    best, length = None, -1
    for entry in shifts.get(datum, ()):
        for prefix in entry.counties:
            if county and county.startswith(prefix) and len(prefix) > length:
                best, length = entry, len(prefix)
    return best


def _proj4_terms(crs: CRS) -> list[str]:
    with warnings.catch_warnings():   # a GK zone loses nothing in PROJ.4 form
        warnings.simplefilter("ignore", UserWarning)
        text = crs.to_proj4()
    return [t for t in text.split() if t not in ("+no_defs", "+type=crs")]


_ELLIPSOID_KEYS = frozenset({"+ellps", "+a", "+b", "+rf", "+f"})
_DATUM_KEYS = frozenset({"+towgs84", "+datum", "+nadgrids"})


def _terms(terms: list[str], keys: frozenset[str], *, keep: bool) -> str:
    """The PROJ terms whose key is (``keep``) or is not in ``keys``."""
    return " ".join(t for t in terms if (t.split("=")[0] in keys) == keep)


def shift_pipeline(crs: CRS, shift: DatumShift) -> str:
    """PROJ pipeline from ``crs`` (x = easting or longitude) to CGCS2000 lon/lat in degrees."""
    terms = _proj4_terms(crs)
    to_deg = "+step +proj=unitconvert +xy_in=rad +xy_out=deg"
    if shift.plane4 is not None:
        if crs.is_geographic or "+proj=tmerc" not in terms:
            raise CrsError("平面四参数只适用于高斯-克吕格投影坐标", "plane 4-parameter shifts apply to Gauss-Krüger "
                           "projected coordinates only")
        p = shift.plane4
        a = math.radians(p.rotation_arcsec / 3600.0)
        k = 1.0 + p.scale_ppm * 1e-6
        # (E, N) → (E', N'):  E' = dy + k(N sin a + E cos a),  N' = dx + k(N cos a − E sin a)
        affine = (f"+step +proj=affine +xoff={p.dy!r} +yoff={p.dx!r} +s11={k * math.cos(a)!r} "
                  f"+s12={k * math.sin(a)!r} +s21={-k * math.sin(a)!r} +s22={k * math.cos(a)!r}")
        tm = _terms(terms, _ELLIPSOID_KEYS | _DATUM_KEYS, keep=False)    # the same zone on GRS80
        return f"+proj=pipeline {affine} +step +inv {tm} +ellps=GRS80 {to_deg}"
    h = [float(v) for v in shift.helmert7 or []]
    if crs.is_geographic:
        first = "+step +proj=unitconvert +xy_in=deg +xy_out=rad"
    else:
        first = "+step +inv " + _terms(terms, _DATUM_KEYS, keep=False)
    return (f"+proj=pipeline {first} +step +proj=cart {_terms(terms, _ELLIPSOID_KEYS, keep=True)} "
            f"+step +proj=helmert +x={h[0]!r} +y={h[1]!r} +z={h[2]!r} +rx={h[3]!r} +ry={h[4]!r} +rz={h[5]!r} "
            f"+s={h[6]!r} +convention={shift.convention} +step +inv +proj=cart +ellps=GRS80 {to_deg}")


def apply_datum_shift(out: ResolvedCrs, county: str | None, layer: str,
                      shifts: dict[str, tuple[DatumShift, ...]] | None = None) -> None:
    """For a Xian 1980 or Beijing 1954 layer: the county's transformation to CGCS2000 from the
    datum-shift table, or a note that PROJ's ballpark (no shift) is used."""
    datum = _datum_of(out.crs)
    if datum not in OLD_DATUMS:
        return
    zh, en = OLD_DATUMS[datum]
    shift = _shift_for(datum, county, load_datum_shifts() if shifts is None else shifts)
    if shift is None:
        out.notes.append(("crs", f"图层 {layer} 为{zh}坐标系，未配置县 {county or '?'} 的{zh}至 CGCS2000 转换参数："
                                 "按 PROJ 默认近似（经纬度不变）转换，平面位置可能偏差数十米；"
                                 "请在 datum_shifts.yaml 中配置当地七参数或四参数后重新入库",
                          f"layer {layer}: {en} coordinates and no {en} → CGCS2000 parameters configured for county "
                          f"{county or '?'}: PROJ's ballpark transformation was used (latitude and longitude kept), "
                          "which may be tens of metres off; configure the local 7- or 4-parameter set in "
                          "datum_shifts.yaml and ingest again"))
        return
    out.pipeline = shift_pipeline(out.crs, shift)
    kind_zh, kind_en = ("七参数", "7-parameter") if shift.helmert7 is not None else ("平面四参数", "plane 4-parameter")
    out.notes.append(("crs", f"图层 {layer}：{zh}坐标按{kind_zh}转换至 CGCS2000（{shift.source}）",
                      f"layer {layer}: {en} coordinates transformed to CGCS2000 with the {kind_en} set "
                      f"'{shift.source}'"))


@lru_cache(maxsize=64)
def transformer_from_pipeline(pipeline: str) -> Transformer:
    """Cached transformer for a datum-shift pipeline."""
    return Transformer.from_pipeline(pipeline)


def check_area_of_use(crs: CRS, label: str, x: np.ndarray, y: np.ndarray, layer: str) -> None:
    """Refuse a CRS whose area of use does not contain the data (CrsError)."""
    aou = crs.area_of_use
    b = _bbox(x, y)
    xs = np.array([b[0], b[2], b[0], b[2], (b[0] + b[2]) / 2])
    ys = np.array([b[1], b[1], b[3], b[3], (b[1] + b[3]) / 2])
    with np.errstate(all="ignore"):
        lon, lat = to_storage(xs, ys, crs)
    bad = not (np.isfinite(lon).all() and np.isfinite(lat).all())
    if not bad:
        bad = bool((np.abs(lon) > 180).any() or (np.abs(lat) > 90).any())
    tm = _tm_params(crs)
    if not bad and aou is None and tm is not None and "cm" in tm:
        bad = bool((np.abs(lon - tm["cm"]) > 6).any())
    if not bad and aou is not None:
        m = AREA_MARGIN_DEG
        bad = bool((lon < aou.west - m).any() or (lon > aou.east + m).any()
                   or (lat < aou.south - m).any() or (lat > aou.north + m).any())
    if bad:
        where = f"{aou.west:.1f}~{aou.east:.1f}E, {aou.south:.1f}~{aou.north:.1f}N" if aou else "?"
        raise CrsError(
            f"图层 {layer} 声明的坐标系 {label} 的适用范围（{where}）不包含数据坐标"
            f"（X {b[0]:.0f}~{b[2]:.0f}，Y {b[1]:.0f}~{b[3]:.0f}），请检查 .prj 是否正确",
            f"layer {layer}: the declared CRS {label} (area of use {where}) does not contain the data "
            f"(x {b[0]:.0f}..{b[2]:.0f}, y {b[1]:.0f}..{b[3]:.0f}); check the .prj file",
            layer=layer, crs=label)


def _prefix_variant(zone: GKZone, want_prefixed: bool) -> GKZone | None:
    return next((z for z in gk_zones() if z.datum == zone.datum and z.width == zone.width
                 and z.zone == zone.zone and z.prefixed == want_prefixed), None)


def resolve(declared: CRS | None, x: np.ndarray, y: np.ndarray, *, layer: str,
            county_lon: float | None = None, county: str | None = None,
            shifts: dict[str, tuple[DatumShift, ...]] | None = None) -> ResolvedCrs:
    """Decide the CRS and axis order of a layer from its declaration and coordinates; for Xian
    1980 and Beijing 1954, the county's datum shift (``shifts``: :func:`load_datum_shifts`)."""
    b = _bbox(x, y)
    if declared is None:
        return _infer(b, layer, county_lon)
    out = _resolve_declared(declared, b, x, y, layer)
    apply_datum_shift(out, county, layer, shifts)
    return out


def _resolve_declared(crs: CRS, b, x, y, layer: str) -> ResolvedCrs:
    epsg, zone = identify(crs)
    if epsg is not None:
        crs = crs_from_epsg(epsg)      # the registry definition carries the area of use
    out = ResolvedCrs(crs, _label(crs, epsg))
    if crs.is_geographic:
        if _looks_lonlat(b) is False:
            out.swapped = True
            out.notes.append(("axes", f"图层 {layer} 的经纬度顺序颠倒（纬度在前），已交换",
                              f"layer {layer}: latitude/longitude were swapped; axes exchanged"))
    elif zone is not None or _tm_params(crs) is not None:
        if _looks_swapped_projected(b):
            out.swapped = True
            b = (b[1], b[0], b[3], b[2])
            out.notes.append(("axes", f"图层 {layer} 的 X/Y 互换（X 为北坐标），已交换",
                              f"layer {layer}: X/Y swapped (X holds the northing); axes exchanged"))
        kind = _easting_kind(b[0], b[2])
        if zone is not None and kind is not None and (kind != 0) != zone.prefixed:
            other = _prefix_variant(zone, kind != 0)
            if other is not None and (kind == 0 or kind == zone.zone):
                out.crs, out.label = crs_from_epsg(other.epsg), f"EPSG:{other.epsg}"
                out.notes.append(("crs", f"图层 {layer}：.prj 为 EPSG:{zone.epsg}，但横坐标"
                                  f"{'带' if kind else '不带'}带号，按 EPSG:{other.epsg} 读取",
                                  f"layer {layer}: the .prj says EPSG:{zone.epsg} but the eastings "
                                  f"{'carry' if kind else 'lack'} the zone prefix; read as EPSG:{other.epsg}"))
    xs, ys = (y, x) if out.swapped else (x, y)
    check_area_of_use(out.crs, out.label, xs, ys, layer)
    out.notes.append(("crs", f"图层 {layer} 的坐标系：{out.label}（来自 .prj/数据声明）",
                      f"layer {layer}: CRS {out.label} (declared)"))
    return out


@lru_cache(maxsize=1)
def county_longitudes() -> dict[str, float]:
    """County-code prefix → approximate longitude (``ingest/county_lon.yaml``)."""
    data = read_yaml(DATA_DIR / "county_lon.yaml")
    return {str(k): float(v) for k, v in data["prefixes"].items()}


def longitude_for_county(county: str | None, conn=None) -> float | None:
    """Approximate longitude of a county: the loaded county boundary, else the prefix table."""
    if not county:
        return None
    if conn is not None:
        with conn.cursor() as cur:
            cur.execute("SELECT ST_X(ST_Centroid(ST_Collect(geom))) FROM cim.admin_area "
                        "WHERE code = %s AND level = 'county' AND is_current", (county,))
            row = cur.fetchone()
        if row and row[0] is not None:
            return float(row[0])
    table = county_longitudes()
    for n in (6, 4, 2):
        if county[:n] in table:
            return table[county[:n]]
    return None


def _infer(b, layer: str, county_lon: float | None) -> ResolvedCrs:
    ll = _looks_lonlat(b)
    if ll is not None:
        out = ResolvedCrs(crs_from_epsg(STORAGE_SRID), f"EPSG:{STORAGE_SRID}", swapped=not ll)
        out.notes.append(("crs", f"图层 {layer} 缺少 .prj；坐标为经纬度，按 CGCS2000 地理坐标（EPSG:4490）读取",
                          f"layer {layer}: no .prj; coordinates are degrees, read as CGCS2000 geographic (EPSG:4490)"))
        return out
    swapped = _looks_swapped_projected(b)
    if swapped:
        b = (b[1], b[0], b[3], b[2])
    kind = _easting_kind(b[0], b[2])
    if kind is None or not _in(b[1], b[3], NORTHING):
        raise CrsError(f"图层 {layer} 缺少 .prj，且坐标范围（X {b[0]:.0f}~{b[2]:.0f}，Y {b[1]:.0f}~{b[3]:.0f}）"
                       "不符合高斯-克吕格投影或经纬度，无法确定坐标系",
                       f"layer {layer}: no .prj and the coordinate ranges (x {b[0]:.0f}..{b[2]:.0f}, "
                       f"y {b[1]:.0f}..{b[3]:.0f}) fit neither Gauss-Krüger nor degrees; the CRS is unknown",
                       layer=layer)
    if kind:
        zone = next(z for z in gk_zones() if z.datum == "CGCS2000" and z.prefixed and z.zone == kind)
        how_zh, how_en = f"横坐标带号 {kind}", f"zone prefix {kind} of the eastings"
    else:
        if county_lon is None:
            raise CrsError(f"图层 {layer} 缺少 .prj，横坐标不带带号；请提供 .prj 或指定县级行政区划代码以推断分带",
                           f"layer {layer}: no .prj and the eastings carry no zone prefix; supply a .prj or "
                           "the county code so the zone can be inferred", layer=layer)
        zone = _zone_for_county(b, county_lon)
        how_zh, how_en = f"县域经度约 {county_lon:.1f}°E", f"county longitude about {county_lon:.1f}E"
    out = ResolvedCrs(crs_from_epsg(zone.epsg), f"EPSG:{zone.epsg}", swapped=swapped)
    out.notes.append(("crs", f"图层 {layer} 缺少 .prj；根据{how_zh}推断为 {zone.datum} {zone.width}° 带 中央经线 "
                      f"{zone.central_meridian}°E（EPSG:{zone.epsg}），基准按 CGCS2000 假定",
                      f"layer {layer}: no .prj; inferred {zone.datum} {zone.width}-degree zone CM "
                      f"{zone.central_meridian}E (EPSG:{zone.epsg}) from the {how_en}; datum assumed CGCS2000"))
    if swapped:
        out.notes.append(("axes", f"图层 {layer} 的 X/Y 互换（X 为北坐标），已交换",
                          f"layer {layer}: X/Y swapped (X holds the northing); axes exchanged"))
    return out


def _zone_for_county(b, county_lon: float) -> GKZone:
    """The CGCS2000 3° zone whose implied data longitude lies closest to the county's."""
    e_mid, n_mid = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    lat = n_mid / 110_900.0
    offset_deg = (e_mid - 500_000.0) / (111_320.0 * max(np.cos(np.radians(lat)), 0.2))
    cands = [z for z in gk_zones() if z.datum == "CGCS2000" and z.width == 3 and not z.prefixed
             and abs(z.central_meridian - county_lon) <= 4.5]
    if not cands:
        raise CrsError(f"经度 {county_lon} 不在中国高斯-克吕格分带范围内",
                       f"longitude {county_lon} is outside the Chinese GK zones")
    return min(cands, key=lambda z: abs(z.central_meridian + offset_deg - county_lon))

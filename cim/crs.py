"""CRS rules of the platform.

Storage is CGCS2000 geographic (EPSG:4490, axis order lon/lat in PostGIS). Vector tiles are
served in Web Mercator (EPSG:3857) and 3D Tiles in ECEF (EPSG:4978). Survey data arrives in
Gauss-Krüger zones of CGCS2000, Xian 1980 or Beijing 1954, 3° or 6° wide, with or without the
zone number prefixed to the easting; this module enumerates those zones so readers and the API
accept them by EPSG code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pyproj import CRS

from cim.errors import CrsError

STORAGE_SRID = 4490
WEB_MERCATOR = 3857
WGS84 = 4326


@dataclass(frozen=True)
class GKZone:
    """One Gauss-Krüger zone CRS."""

    epsg: int
    datum: str           # CGCS2000 | Xian1980 | Beijing1954
    width: int           # 3 or 6 degrees
    central_meridian: int
    zone: int
    prefixed: bool       # easting carries the zone number (e.g. 37 500 000)

    @property
    def false_easting(self) -> float:
        """False easting in metres."""
        return self.zone * 1_000_000 + 500_000 if self.prefixed else 500_000


# (datum, width, first EPSG with zone prefix, first EPSG without, first zone number, count)
_SERIES = [
    ("CGCS2000", 3, 4513, 4534, 25, 21),
    ("CGCS2000", 6, 4491, 4502, 13, 11),
    ("Xian1980", 3, 2349, 2370, 25, 21),
    ("Xian1980", 6, 2327, 2338, 13, 11),
    ("Beijing1954", 3, 2401, 2422, 25, 21),
    ("Beijing1954", 6, 21413, 21453, 13, 11),
]


@lru_cache(maxsize=1)
def gk_zones() -> tuple[GKZone, ...]:
    """Every Gauss-Krüger zone CRS used for Chinese survey data."""
    zones = []
    for datum, width, prefixed0, plain0, zone0, count in _SERIES:
        for i in range(count):
            zone = zone0 + i
            cm = zone * 3 if width == 3 else zone * 6 - 3
            zones.append(GKZone(prefixed0 + i, datum, width, cm, zone, True))
            zones.append(GKZone(plain0 + i, datum, width, cm, zone, False))
    return tuple(zones)


def parse_crs_uri(value: str) -> int:
    """Parse an OGC CRS URI / CURIE / ``EPSG:n`` into an EPSG code (CRS84 → 4326).

    Accepted: ``http://www.opengis.net/def/crs/EPSG/0/4490``, ``[EPSG:4490]``, ``EPSG:4490``,
    ``http://www.opengis.net/def/crs/OGC/1.3/CRS84``, ``OGC:CRS84``, a bare number.
    """
    v = value.strip().strip("[]")
    low = v.lower()
    if low.endswith("crs84") or low.endswith("crs84h"):
        return WGS84
    for sep in ("/epsg/0/", "epsg:", "epsg::"):
        if sep in low:
            tail = low.rsplit(sep, 1)[1]
            break
    else:
        tail = low
    if not tail.isdigit():
        raise CrsError(f"无法识别的坐标参考系：{value}", f"unrecognised CRS: {value}")
    return int(tail)


def output_crs_list() -> list[int]:
    """CRSs offered by the features API: storage, CRS84, Web Mercator and every CGCS2000 GK zone."""
    return [STORAGE_SRID, WGS84, WEB_MERCATOR] + [z.epsg for z in gk_zones() if z.datum == "CGCS2000"]


@lru_cache(maxsize=256)
def crs_from_epsg(epsg: int) -> CRS:
    """pyproj CRS for a code, with a bilingual error when the code is unknown."""
    try:
        return CRS.from_epsg(epsg)
    except Exception as exc:  # pyproj raises CRSError
        raise CrsError(f"未知的 EPSG 代码：{epsg}", f"unknown EPSG code: {epsg}") from exc


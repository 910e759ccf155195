"""The demo town's layout: frame, street grid, river, terrain and administrative areas.

Everything is built in a local metric frame (x east, y north, metres; y = 0 is the centreline
of the riverside road, the river runs below it) and placed in CGCS2000 3° Gauss-Krüger CM 111E
(EPSG:4546) by one rotation and translation, so the town sits around 29.04 N 111.69 E in
鼎城区 (county code 430703). Ground heights are in the 1985 national height datum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from pyproj import Transformer

SOURCE_EPSG = 4546                     # CGCS2000 3-degree GK CM 111E, no zone prefix
CENTRE_LONLAT = (111.69, 29.04)
COUNTY_CODE = "430703"
COUNTY_NAME = "鼎城区"
RIVER_NAME = "清水河"
NORMAL_WATER_Z = 28.6                  # 常水位 of the receiving river (m, 1985 datum)
FLOOD_WATER_Z = 31.2                   # 洪水位
BANK_Z = 32.0                          # ground at the top of the river bank
RIVER_HALF_WIDTH = 30.0
ROAD_WIDTH = {"主干路": 40.0, "次干路": 24.0}
ROAD_CLASS_CODE = {"主干路": "ZG", "次干路": "CG"}

_NS_NAMES = ["朗州路", "善卷路", "桃花源路", "金霞路", "鼎新路", "育英路", "丹洲路", "德政路", "阳明路", "沅水路"]
_EW_NAMES = ["滨河路", "武陵大道", "人民路", "建设路", "永安街", "文昌路", "迎宾路", "花园路", "紫菱路", "长庚路"]
_COMMUNITY_NAMES = ["桃园", "金霞", "花园", "滨江", "文昌", "育才", "永安", "新河", "丹阳", "鼎新", "善德", "乐安",
                    "柳叶", "紫菱", "春申", "长庚", "朗州", "德山"]
STREETS = [("001", "清水街道"), ("002", "鼎新街道"), ("101", "演示镇")]


def _names(pool: list[str], n: int, fallback: str) -> list[str]:
    """Road names: the pool first, then numbered planned-road names (经一路, 纬一路 …)."""
    return [pool[k] if k < len(pool) else f"{fallback}{k - len(pool) + 1}路" for k in range(n)]


@dataclass
class Road:
    """One straight road of the grid (centreline along x for east-west roads)."""

    name: str
    road_class: str          # 主干路 | 次干路
    axis: str                # "ns" (constant x) or "ew" (constant y)
    pos: float               # x of an ns road, y of an ew road (local metres)

    @property
    def width(self) -> float:
        """Carriageway plus pavements, kerb to kerb of the right-of-way (m)."""
        return ROAD_WIDTH[self.road_class]


@dataclass
class Town:
    """Layout of the demo town; ``scale`` multiplies its area."""

    seed: int = 7
    scale: float = 1.0
    width: float = field(init=False)
    height: float = field(init=False)
    xs: np.ndarray = field(init=False)
    ys: np.ndarray = field(init=False)
    ns_roads: list[Road] = field(init=False)
    ew_roads: list[Road] = field(init=False)
    rotation_deg: float = 12.0

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        k = math.sqrt(max(self.scale, 0.05))
        nx = max(3, round(6 * k) + 1)          # ≈ 400 m between north-south roads
        ny = max(3, round(7 * k) + 1)          # ≈ 300 m between east-west roads
        self.width, self.height = (nx - 1) * 400.0, (ny - 1) * 300.0
        self.xs = np.linspace(0, self.width, nx)
        self.ys = np.linspace(0, self.height, ny)
        self.xs[1:-1] += rng.uniform(-25, 25, nx - 2)
        self.ys[1:-1] += rng.uniform(-20, 20, ny - 2)
        ns_names = _names(_NS_NAMES, nx, "经")
        ew_names = _names(_EW_NAMES, ny, "纬")
        self.ns_roads = [Road(ns_names[i], "主干路" if i % 3 == 1 else "次干路", "ns", float(self.xs[i]))
                         for i in range(nx)]
        self.ew_roads = [Road(ew_names[j], "主干路" if j % 3 == 0 else "次干路", "ew", float(self.ys[j]))
                         for j in range(ny)]
        centre = Transformer.from_crs(4490, SOURCE_EPSG, always_xy=True).transform(*CENTRE_LONLAT)
        self._centre_world = np.array(centre)
        self._centre_local = np.array([self.width / 2, self.height / 2])
        a = math.radians(self.rotation_deg)
        self._rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])

    # --- frame -------------------------------------------------------------------------------
    def to_world(self, xy: np.ndarray) -> np.ndarray:
        """Local (n, 2) metres → EPSG:4546 eastings/northings."""
        return (np.asarray(xy, dtype=float) - self._centre_local) @ self._rot.T + self._centre_world

    def to_local(self, xy: np.ndarray) -> np.ndarray:
        """EPSG:4546 (n, 2) → local metres."""
        return (np.asarray(xy, dtype=float) - self._centre_world) @ self._rot + self._centre_local

    def geoms_to_world(self, geoms: np.ndarray) -> np.ndarray:
        """Shapely geometries in the local frame → EPSG:4546."""
        return shapely.transform(geoms, self.to_world)

    # --- river and terrain ---------------------------------------------------------------------
    def river_y(self, x: np.ndarray) -> np.ndarray:
        """Local y of the river centreline below the riverside road."""
        return -70.0 + 12.0 * np.sin(np.asarray(x) / 420.0)

    def ground(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Ground height (m, 1985 datum): a river valley, the town rising gently northwards.

        North of the bank the slope is 0.45 % plus a small undulation whose north-south gradient
        never exceeds 0.11 %, so the ground falls monotonically towards the river along every
        north-south road and gravity drainage can follow it.
        """
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        d = y - self.river_y(x)
        ad = np.abs(d)
        fade = np.clip((d - RIVER_HALF_WIDTH) / 200.0, 0, 1)
        north = (BANK_Z + 0.0045 * (d - RIVER_HALF_WIDTH)
                 + fade * (0.5 * np.sin(x / 380.0 + 0.7) + 0.3 * np.cos(y / 290.0 + x / 640.0)))
        south = BANK_Z + 0.003 * (-d - RIVER_HALF_WIDTH)
        bed = NORMAL_WATER_Z - 2.0 + (BANK_Z - NORMAL_WATER_Z + 2.0) * (ad / RIVER_HALF_WIDTH) ** 2
        return np.where(ad < RIVER_HALF_WIDTH, bed, np.where(d > 0, north, south))

    def river_polygon(self) -> shapely.Polygon:
        """The river channel between its bank tops (local frame)."""
        x = np.linspace(-600, self.width + 600, 200)
        yc = self.river_y(x)
        ring = np.concatenate([np.c_[x, yc + RIVER_HALF_WIDTH], np.c_[x[::-1], yc[::-1] - RIVER_HALF_WIDTH]])
        return shapely.Polygon(ring)

    # --- blocks --------------------------------------------------------------------------------
    def blocks(self, setback: float = 6.0) -> list[tuple[int, int, shapely.Polygon]]:
        """Building land between the roads: (i, j, polygon) per block, local frame."""
        out = []
        for i in range(len(self.xs) - 1):
            for j in range(len(self.ys) - 1):
                x0 = self.xs[i] + self.ns_roads[i].width / 2 + setback
                x1 = self.xs[i + 1] - self.ns_roads[i + 1].width / 2 - setback
                y0 = self.ys[j] + self.ew_roads[j].width / 2 + setback
                y1 = self.ys[j + 1] - self.ew_roads[j + 1].width / 2 - setback
                out.append((i, j, shapely.box(x0, y0, x1, y1)))
        return out

    # --- administrative areas --------------------------------------------------------------------
    def county_polygon(self) -> shapely.Polygon:
        """An irregular county outline well around the town (local frame)."""
        t = np.linspace(0, 2 * math.pi, 180, endpoint=False)
        r0 = 1.6 * max(self.width, self.height)
        r = r0 * (1 + 0.12 * np.sin(3 * t + 0.4) + 0.06 * np.sin(7 * t + 1.3))
        c = self._centre_local
        return shapely.Polygon(np.c_[c[0] + r * np.cos(t), c[1] + r * np.sin(t)])

    def admin_areas(self) -> list[dict]:
        """County, 3 street-level units (9-digit codes) and communities (12-digit codes)."""
        county = self.county_polygon()
        cuts = [self.xs[round(len(self.xs) * k / 3)] for k in (1, 2)]
        bands = [(-1e7, cuts[0]), (cuts[0], cuts[1]), (cuts[1], 1e7)]
        rows = [{"code": COUNTY_CODE, "name": COUNTY_NAME, "level": "county", "parent": "430700",
                 "geom": county}]
        south = float(self.river_y(0.0)) - 10
        nrow = max(2, round(3 * math.sqrt(self.scale)))
        yb = [south] + [float(self.ys[round(len(self.ys) * k / nrow)]) for k in range(1, nrow)] + [self.height]
        name_i = 0
        for (suffix, sname), (bx0, bx1) in zip(STREETS, bands, strict=True):
            scode = COUNTY_CODE + suffix
            rows.append({"code": scode, "name": sname, "level": "street", "parent": COUNTY_CODE,
                         "geom": county.intersection(shapely.box(bx0, -1e7, bx1, 1e7))})
            cx0, cx1 = max(bx0, 0.0), min(bx1, self.width)
            for k in range(nrow):
                base = _COMMUNITY_NAMES[name_i % len(_COMMUNITY_NAMES)]
                suffix_n = "" if name_i < len(_COMMUNITY_NAMES) else str(name_i // len(_COMMUNITY_NAMES) + 1)
                rows.append({"code": f"{scode}{k + 1:03d}", "name": f"{base}{suffix_n}社区", "level": "community",
                             "parent": scode, "geom": shapely.box(cx0, yb[k], cx1, yb[k + 1])})
                name_i += 1
        return rows

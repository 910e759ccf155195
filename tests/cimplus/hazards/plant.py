"""Planted facilities for the hazard tests: rows written straight into the feature tables at
exact metric positions.

Coordinates are metres east/north in the transverse Mercator frame the scans measure in for
a county around (LON0, LAT0) (``cim.metric_frame``: scale 1 at the 0.1° cell centre), so a pipe
planted 1.000 m from a wall measures 1.000 m. Every row is current and belongs to the county
given; with ``delivery`` the rows belong to a delivery row of that scope (incremental rescans).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import psycopg2.extensions
import shapely
from pyproj import Transformer
from shapely.geometry import LineString, MultiPolygon, Point, box

LON0, LAT0 = 111.7, 29.1
PROJ = f"+proj=tmerc +lat_0={LAT0} +lon_0={LON0} +k=1 +x_0=0 +y_0=0 +ellps=GRS80 +units=m +no_defs"
_TO_GEO = Transformer.from_crs(PROJ, "EPSG:4490", always_xy=True)
_numbers = itertools.count(1)


def geo(geom):
    """A metric shapely geometry → EWKT in EPSG:4490."""
    g = shapely.transform(geom, lambda c: np.column_stack(_TO_GEO.transform(c[:, 0], c[:, 1])))
    return f"SRID=4490;{shapely.to_wkt(g, rounding_precision=-1)}"


class Plant:
    """Writes facilities of one county."""

    def __init__(self, conn: psycopg2.extensions.connection, county: str) -> None:
        self.conn = conn
        self.county = county
        self.delivery: int | None = None

    def new_delivery(self, scopes: Sequence[str]) -> int:
        """A current delivery row holding ``scopes``; later rows belong to it."""
        with self.conn.cursor() as cur:
            cur.execute("INSERT INTO cim.delivery (county_code, file_name, sha256, state, submitted_by, layers) "
                        "VALUES (%s, 'plant.zip', repeat('0', 64), 'loading', 'test', %s) RETURNING id",
                        (self.county, list(scopes)))
            self.delivery = cur.fetchone()[0]
        return self.delivery

    def make_current(self, scopes: Sequence[str]) -> None:
        """Retire the county's other rows of ``scopes`` and make the delivery current (as a load does)."""
        with self.conn.cursor() as cur:
            for scope in scopes:
                table, _, net = scope.partition(":")
                cur.execute(f"UPDATE cim.{table} SET is_current = false WHERE county_code = %s AND is_current "
                            f"AND delivery_id IS DISTINCT FROM %s" + (" AND network = %s" if net else ""),
                            (self.county, self.delivery, *([net] if net else [])))
            cur.execute("UPDATE cim.delivery SET state = 'current' WHERE id = %s", (self.delivery,))

    def segment(self, network: str, a: tuple[float, float], b: tuple[float, float], **attrs) -> int:
        """A pipe segment from ``a`` to ``b`` (metres); its end points are written too unless
        ``start_exp_no`` / ``end_exp_no`` name existing ones."""
        attrs.setdefault("start_exp_no", f"{network}{next(_numbers)}")
        attrs.setdefault("end_exp_no", f"{network}{next(_numbers)}")
        ends = {}
        for end, xy in (("start", a), ("end", b)):
            ends[f"{end}_point_id"] = attrs.pop(f"{end}_point_id", None) or self.point(
                network, xy, exp_no=attrs[f"{end}_exp_no"], subtype=attrs.get("subtype"),
                ground_z=attrs.pop(f"{end}_ground_z", None))
        return self._insert("pipe_segment", {"network": network, **ends, **attrs}, LineString([a, b]))

    def point(self, network: str, xy: tuple[float, float], **attrs) -> int:
        """A pipe point at ``xy``."""
        attrs.setdefault("exp_no", f"{network}{next(_numbers)}")
        return self._insert("pipe_point", {"network": network, **attrs}, Point(xy))

    def building(self, x0: float, y0: float, x1: float, y1: float, **attrs) -> int:
        """A rectangular building footprint (metres)."""
        attrs.setdefault("code", f"B{next(_numbers)}")
        return self._insert("building", attrs, MultiPolygon([box(x0, y0, x1, y1)]))

    def admin(self, code: str, level: str, x0: float, y0: float, x1: float, y1: float, parent: str | None = None) -> int:
        """An administrative area (street / community) rectangle."""
        return self._insert("admin_area", {"code": code, "name": f"区域{code}", "level": level, "parent_code": parent},
                            MultiPolygon([box(x0, y0, x1, y1)]))

    def _insert(self, table: str, attrs: dict, geom) -> int:
        attrs = {k: v for k, v in attrs.items() if v is not None}
        cols = [*attrs, "county_code", "delivery_id", "geom"]
        vals = [*attrs.values(), self.county, self.delivery, geo(geom)]
        with self.conn.cursor() as cur:
            cur.execute(f"INSERT INTO cim.{table} ({', '.join(cols)}) VALUES "
                        f"({', '.join(['%s'] * (len(cols) - 1))}, ST_GeomFromEWKT(%s)) RETURNING id", vals)
            return cur.fetchone()[0]

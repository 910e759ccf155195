"""How a ledger entry names the facilities it is about, and the county's metric frame.

A facility reference is ``{table, id, key, code}``: ``id`` is the row in the feature table,
``key`` names the facility across deliveries (a re-survey loads new rows with new ids, the key
stays), ``code`` is what people read (survey number, building code). Keys:

- ``pipe_segment:<network>:<start exp_no>><end exp_no>`` (point numbers are unique per network
  in a delivery, rule Q01; a segment is fixed by its two ends);
- ``pipe_point:<network>:<exp_no>``;
- ``building:<code>``, or ``building:geo:<geohash>`` of a point on the footprint (≈1 m) when the
  building has no code.

Exact metres are measured in a transverse Mercator frame with scale 1 centred on the county
(``cim.metric_frame``, a 0.1° cell: at 50 km from its centre the scale error is 3·10⁻⁵), and
only for candidates a degree-space index query found: whole tables are never transformed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import psycopg2
import psycopg2.extensions

from cim.schema import feature_table

log = logging.getLogger(__name__)

#: metres per degree of latitude (lowest value, at the equator): degree radii built from it and
#: from the parallel's length are supersets of the metric radius
M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON_EQ = 111_320.0


def key_sql(table: str, a: str) -> str:
    """SQL text of the facility key of row alias ``a`` of ``table`` (a feature table name)."""
    feature_table(table)
    if table == "pipe_segment":
        return f"('pipe_segment:' || {a}.network || ':' || {a}.start_exp_no || '>' || {a}.end_exp_no)"
    if table == "pipe_point":
        return f"('pipe_point:' || {a}.network || ':' || {a}.exp_no)"
    if table == "building":
        return f"('building:' || coalesce({a}.code, 'geo:' || ST_GeoHash(ST_PointOnSurface({a}.geom), 10)))"
    return f"('{table}:' || {a}.id)"


def code_sql(table: str, a: str) -> str:
    """SQL text of the code people read for a facility."""
    if table == "pipe_segment":
        return f"coalesce({a}.code, {a}.start_exp_no || '→' || {a}.end_exp_no)"
    if table == "pipe_point":
        return f"{a}.exp_no"
    if table == "building":
        return f"coalesce({a}.code, {a}.name, '#' || {a}.id)"
    return f"'#' || {a}.id"


def ref_sql(table: str, a: str) -> str:
    """SQL text of a facility reference object (``{table, id, key, code[, network]}``)."""
    net = f", 'network', {a}.network" if table in ("pipe_segment", "pipe_point") else ""
    return (f"jsonb_build_object('table', '{table}', 'id', {a}.id, 'key', {key_sql(table, a)}, "
            f"'code', {code_sql(table, a)}{net})")


def hash_sql(table: str, a: str) -> str:
    """SQL text of a digest of a row's content (every attribute column and the geometry), to tell a
    re-delivered unchanged facility from a changed one: a 64-bit hash of the row's text, compared
    only between rows of the same facility key (md5 cost twice as much for nothing more here)."""
    cols = ", ".join(f"{a}.{c.name}" for c in feature_table(table).columns)
    return f"hashtextextended(ROW({cols}, ST_AsEWKB({a}.geom))::text, 0)"


@dataclass(frozen=True)
class Frame:
    """The county's metric frame and the degree factors of its index queries."""

    srid: int
    proj: str
    lat_max: float           # largest |latitude| of the county's data (degree radii are sized for it)
    new: bool = False        # registered by this transaction (other connections cannot see it yet)

    def deg(self, metres: float) -> float:
        """A degree radius that holds every point within ``metres`` (a superset for index queries)."""
        return metres / self.m_per_deg * 1.01

    def deg_x(self, metres: float) -> float:
        """A longitude difference that holds every east–west distance up to ``metres``."""
        return metres / (M_PER_DEG_LON_EQ * math.cos(math.radians(min(self.lat_max + 0.5, 89.0)))) * 1.01

    def deg_y(self, metres: float) -> float:
        """A latitude difference that holds every north–south distance up to ``metres``."""
        return metres / M_PER_DEG_LAT * 1.01

    @property
    def m_per_deg(self) -> float:
        """Fewest metres a degree spans anywhere in the county (along a parallel or a meridian)."""
        return min(M_PER_DEG_LAT, M_PER_DEG_LON_EQ * math.cos(math.radians(min(self.lat_max + 0.5, 89.0))))


def _gk_zone(lon: float) -> int:
    """CGCS2000 3° Gauss–Krüger zone (central meridian, scale 1): EPSG 4534 (75°E) … 4554 (135°E)."""
    cm = min(135, max(75, 3 * round(lon / 3)))
    return 4534 + (cm - 75) // 3


def county_frame(cur: psycopg2.extensions.cursor, county: str) -> Frame | None:
    """The metric frame of a county's current data (None when the county has no data).

    Registers the frame (``cim.metric_frame``) when missing; if the database refuses (a role
    without the migration's function), the CGCS2000 3° Gauss–Krüger zone is used instead.
    """
    extent = None
    for table in ("pipe_segment", "pipe_point", "building", "admin_area"):
        cur.execute(f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                    f"(SELECT ST_Extent(geom) e FROM cim.{table} WHERE county_code = %s AND is_current) x", (county,))
        row = cur.fetchone()
        if row and row[0] is not None:
            extent = row
            break
    if extent is None:
        return None
    x0, y0, x1, y1 = (float(v) for v in extent)
    lon, lat = (x0 + x1) / 2, (y0 + y1) / 2
    lat_max = max(abs(y0), abs(y1))
    cur.execute("SAVEPOINT hz_frame")
    new = False
    try:
        cur.execute("SELECT count(*) FROM spatial_ref_sys")
        row = cur.fetchone()
        assert row is not None  # an aggregate returns one row
        before = row[0]
        cur.execute("SELECT cim.metric_frame(%s, %s)", (lon, lat))
        row = cur.fetchone()
        assert row is not None  # a function call returns one row
        srid = row[0]
        cur.execute("SELECT count(*) FROM spatial_ref_sys")
        row = cur.fetchone()
        assert row is not None  # an aggregate returns one row
        new = row[0] > before
        cur.execute("RELEASE SAVEPOINT hz_frame")
    except psycopg2.Error as exc:
        cur.execute("ROLLBACK TO SAVEPOINT hz_frame")
        log.warning("metric frame not registered (%s); using the Gauss-Kruger zone", exc)
        srid = None
    if srid is None:
        srid = _gk_zone(lon)
    cur.execute("SELECT proj4text FROM spatial_ref_sys WHERE srid = %s", (srid,))
    row = cur.fetchone()
    # cim.metric_frame registers its srid; the Gauss-Krüger zones 4534-4554 ship with PostGIS
    assert row is not None
    proj = row[0]
    return Frame(int(srid), str(proj).strip(), lat_max, new)

"""A synthetic county for the hazard-scan benchmark: a street grid with every network along
every street, buildings in the blocks, and planted hazards, written straight into the feature
tables (COPY) as current rows of one delivery per scope.

Layout (metres in the county's local transverse Mercator frame, centred on LON0/LAT0):
blocks of ``BLOCK`` m separated by ``STREET`` m wide streets on a square grid. Each network is a
grid of its own shifted by (off, off) from the street centre lines, so pipes of one network meet
at nodes and pipes of different networks cross near every intersection; along a street the
gas main runs beside drainage (1.5 m) and power (1 m): parallel-run candidates, compliant unless
planted. Buildings stand 10 × 12 m on a 15 m grid inside the blocks; in a share of the blocks the
first row stands 1.8 m from the gas main (candidates of G02, compliant). Planted hazards (counts
in :data:`PLANTED`): houses on a gas main (G01), houses too close (G02), water mains moved next to
gas (G03), crossings with too little vertical clearance (G04), shallow gas (G05), grey cast iron
(G06), grade C/D (B01) and commercial self-built houses (B02).

Sizes: ``--blocks N`` gives N² blocks of 100 buildings and about 30·N² pipe segments
(N = 100: 1 000 000 buildings, 300 000 segments).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg2.extensions
import shapely
from pyproj import Transformer

LON0, LAT0 = 111.7, 29.1
COUNTY = "439900"
BLOCK, STREET = 150.0, 20.0
PITCH = BLOCK + STREET
SEGS_PER_LINK = 4
# network → (offset from the street centre line, DN mm, depth of the reference point, z_ref, share of streets)
NETWORKS = {"RQ": (3.0, 160, 1.2, "centre", 1.0), "JS": (-3.0, 200, 1.6, "centre", 1.0),
            "PS": (1.5, 300, 2.5, "invert", 1.0), "DL": (4.0, 100, 0.8, "centre", 0.5),
            "TX": (-6.0, 100, 0.7, "centre", 0.25)}
GROUND = 50.0
PLANTED = {"G01": 300, "G02": 300, "G03": 300, "G04": 200, "G05": 200, "G06": 200, "B01": 1000, "B02": 500}
PROJ = f"+proj=tmerc +lat_0={LAT0} +lon_0={LON0} +k=1 +x_0=0 +y_0=0 +ellps=GRS80 +units=m +no_defs"
_TO_GEO = Transformer.from_crs(PROJ, "EPSG:4490", always_xy=True)


#: the whole county turned by this angle (degrees, anticlockwise about the frame's origin) before
#: it is written: distances and so the planted hazards stay the same, the streets run at an angle
ROTATE_DEG = 0.0


def to_geo(geoms: np.ndarray) -> np.ndarray:
    """Metric shapely geometries → EPSG:4490 (turned by :data:`ROTATE_DEG` first)."""
    a = np.radians(ROTATE_DEG)

    def convert(c: np.ndarray) -> np.ndarray:
        x, y = c[:, 0] * np.cos(a) - c[:, 1] * np.sin(a), c[:, 0] * np.sin(a) + c[:, 1] * np.cos(a)
        return np.column_stack(_TO_GEO.transform(x, y))

    return shapely.transform(geoms, convert)


def ewkb(geoms: np.ndarray) -> np.ndarray:
    """Hex EWKB with SRID 4490."""
    return shapely.to_wkb(shapely.set_srid(geoms, 4490), hex=True, include_srid=True)


@dataclass
class County:
    """Generated rows (metric geometries) before writing."""

    buildings: pd.DataFrame
    points: pd.DataFrame
    segments: pd.DataFrame


def _links(n: int, rng: np.random.Generator, share: float) -> np.ndarray:
    """Street links (x0, y0, x1, y1) along the grid lines, a ``share`` of the streets taken."""
    out = []
    for horizontal in (True, False):
        lines = np.arange(n + 1)
        keep = lines[rng.random(len(lines)) < share] if share < 1 else lines
        for line in keep:
            c = line * PITCH - STREET / 2
            for k in range(n):
                a, b = k * PITCH - STREET / 2, (k + 1) * PITCH - STREET / 2
                out.append((a, c, b, c) if horizontal else (c, a, c, b))
    return np.array(out, dtype=float)


def network(net: str, n: int, rng: np.random.Generator, start_no: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Points and segments of one network's grid."""
    off, dn, depth, zref, share = NETWORKS[net]
    links = _links(n, rng, share) + off
    t = np.linspace(0, 1, SEGS_PER_LINK + 1)
    xs = links[:, [0]] + (links[:, [2]] - links[:, [0]]) * t
    ys = links[:, [1]] + (links[:, [3]] - links[:, [1]]) * t
    # points: one per distinct vertex (nodes shared by the links meeting there)
    verts = np.round(np.column_stack([xs.ravel(), ys.ravel()]), 3)
    uniq, inverse = np.unique(verts, axis=0, return_inverse=True)
    inverse = inverse.reshape(xs.shape)
    nos = np.array([f"{net}{start_no + i}" for i in range(len(uniq))], dtype=object)
    z = GROUND - depth
    pts = pd.DataFrame({"network": net, "exp_no": nos, "ground_z": GROUND, "x": uniq[:, 0], "y": uniq[:, 1],
                        "subtype": "YS" if net == "PS" else None,
                        "node_type": "manhole" if net == "PS" else None,
                        "anti_fall_net": True if net == "PS" else None})
    a, b = inverse[:, :-1].ravel(), inverse[:, 1:].ravel()
    seg = pd.DataFrame({"network": net, "start_exp_no": nos[a], "end_exp_no": nos[b], "a": a, "b": b,
                        "x0": uniq[a, 0], "y0": uniq[a, 1], "x1": uniq[b, 0], "y1": uniq[b, 1],
                        "diameter_mm": float(dn), "z_ref": zref, "start_depth": depth, "end_depth": depth,
                        "start_z": z, "end_z": z, "material": {"RQ": "PE", "JS": "QM", "PS": "T-GJ", "DL": "G",
                                                               "TX": "PVC"}[net],
                        "install_year": rng.integers(2008, 2023, len(a)), "burial_type": "ZM",
                        "pressure_class": "ZB" if net == "RQ" else None,
                        "subtype": "YS" if net == "PS" else None})
    if net == "RQ":   # every fifth street a 中压A main
        main = (np.round((seg["y0"] - off + STREET / 2) / PITCH) % 5 == 0) & (seg["y0"] == seg["y1"])
        seg.loc[main, "pressure_class"] = "ZA"
    if net == "PS":   # gravity: falls 0.1 m along each segment
        seg["start_z"] = z + 0.05
        seg["end_z"] = z - 0.05
    return pts, seg


def buildings(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """100 buildings per block; in 30 % of the blocks the first row is 1.8 m from the gas main."""
    i, j, k, m = np.meshgrid(np.arange(n), np.arange(n), np.arange(10), np.arange(10), indexing="ij")
    i, j, k, m = (v.ravel() for v in (i, j, k, m))
    x0 = i * PITCH + k * 15.0 + 2.5
    y0 = j * PITCH + m * 15.0 + 1.5
    near = (m == 0) & (rng.random(len(i)) < 0.3)
    gas_y = j * PITCH - STREET / 2 + NETWORKS["RQ"][0]
    y0 = np.where(near, gas_y + 0.08 + 1.8, y0)                # DN160: outer wall 0.08 m off the axis
    return pd.DataFrame({"code": [f"B{v}" for v in range(len(i))], "x0": x0, "y0": y0, "x1": x0 + 10.0,
                         "y1": y0 + 12.0, "floors_above": rng.integers(1, 8, len(i)),
                         "use_code": rng.choice(["ZZ", "ZZ", "ZZ", "PF", "CY", "BG", "JY"], len(i)),
                         "self_built": rng.random(len(i)) < 0.03,
                         "appraisal_grade": rng.choice(["A", "B", None], len(i), p=[0.3, 0.2, 0.5])})


def plant(county: County, rng: np.random.Generator) -> dict[str, int]:
    """Plant the hazards of :data:`PLANTED` (in place); returns what was planted."""
    b, s = county.buildings, county.segments
    gas = s.index[(s["network"] == "RQ") & (s["y0"] == s["y1"])].to_numpy()
    picks = rng.choice(gas, PLANTED["G01"] + PLANTED["G02"] + PLANTED["G05"] + PLANTED["G06"], replace=False)
    g01, g02, g05, g06 = np.split(picks, np.cumsum([PLANTED[r] for r in ("G01", "G02", "G05")]))
    extra = []
    for idx in g01:                       # a house straddling the gas main
        r = s.loc[idx]
        xm = (r.x0 + r.x1) / 2
        extra.append((xm - 5, r.y0 - 6, xm + 5, r.y0 + 6))
    for idx in g02:                       # a house 0.6 m from the outer wall (ZB needs 1.0 m, ZA 1.5 m)
        r = s.loc[idx]
        xm = (r.x0 + r.x1) / 2
        extra.append((xm - 5, r.y0 + 0.08 + 0.6, xm + 5, r.y0 + 0.08 + 12.6))
    add = pd.DataFrame(extra, columns=["x0", "y0", "x1", "y1"])
    add["code"] = [f"P{v}" for v in range(len(add))]
    add["floors_above"], add["use_code"], add["self_built"], add["appraisal_grade"] = 2, "ZZ", False, "A"
    county.buildings = b = pd.concat([b, add], ignore_index=True)
    s.loc[g05, ["start_depth", "end_depth"]] = 0.5                              # cover 0.42 m < 0.6 m
    s.loc[g06, "material"] = "ZT-HK"                                           # grey cast iron
    water = s.index[(s["network"] == "JS") & (s["y0"] == s["y1"])].to_numpy()
    g03 = rng.choice(water, PLANTED["G03"], replace=False)                     # water main 0.3 m from gas
    s.loc[g03, ["y0", "y1"]] = s.loc[g03, ["y0", "y1"]].to_numpy() + (6.0 - 0.08 - 0.1 - 0.3)
    power = s.index[(s["network"] == "DL") & (s["x0"] == s["x1"])].to_numpy()
    g04 = rng.choice(power, PLANTED["G04"], replace=False)                     # power cable down at the gas depth
    s.loc[g04, ["start_z", "end_z"]] = GROUND - 1.2
    grade = rng.choice(len(b), PLANTED["B01"], replace=False)
    b.loc[grade, "appraisal_grade"] = rng.choice(["C", "D"], len(grade))
    rest = np.setdiff1d(np.arange(len(b)), grade)
    sb = rng.choice(rest, PLANTED["B02"], replace=False)
    b.loc[sb, ["self_built", "floors_above", "use_code", "appraisal_grade"]] = [True, 4, "CY", None]
    return dict(PLANTED)


def generate(n: int, seed: int = 12) -> County:
    """The county with ``n``² blocks."""
    rng = np.random.default_rng(seed)
    pts, segs, no = [], [], 1
    for net in NETWORKS:
        p, q = network(net, n, rng, no)
        no += len(p)
        pts.append(p)
        segs.append(q)
    county = County(buildings(n, rng), pd.concat(pts, ignore_index=True), pd.concat(segs, ignore_index=True))
    plant(county, rng)
    return county


def _copy(cur: psycopg2.extensions.cursor, table: str, frame: pd.DataFrame, chunk: int = 200_000) -> None:
    cols = list(frame.columns)
    for start in range(0, len(frame), chunk):
        buf = io.StringIO()
        frame.iloc[start:start + chunk].to_csv(buf, header=False, index=False)
        buf.seek(0)
        cur.copy_expert(f"COPY cim.{table} ({', '.join(cols)}) FROM STDIN WITH (FORMAT csv)", buf)


def delivery(cur: psycopg2.extensions.cursor, scopes: list[str], county: str = COUNTY, state: str = "current") -> int:
    """A delivery row holding ``scopes``."""
    cur.execute("INSERT INTO cim.delivery (county_code, file_name, sha256, state, submitted_by, layers) "
                "VALUES (%s, 'bench.zip', repeat('0', 64), %s, 'bench', %s) RETURNING id", (county, state, scopes))
    return cur.fetchone()[0]


def write_buildings(cur, frame: pd.DataFrame, delivery_id: int, county: str = COUNTY) -> None:
    boxes = shapely.box(frame["x0"].to_numpy(), frame["y0"].to_numpy(), frame["x1"].to_numpy(), frame["y1"].to_numpy())
    geoms = to_geo(shapely.multipolygons(boxes[:, None]))
    out = frame[["code", "floors_above", "use_code", "self_built", "appraisal_grade"]].copy()
    out["county_code"], out["delivery_id"], out["geom"] = county, delivery_id, ewkb(geoms)
    _copy(cur, "building", out)


def write_network(cur, pts: pd.DataFrame, segs: pd.DataFrame, delivery_id: int, county: str = COUNTY) -> None:
    """Points, then segments referring to them (ids read back by point number)."""
    p = pts.drop(columns=["x", "y"]).copy()
    p["county_code"], p["delivery_id"] = county, delivery_id
    p["geom"] = ewkb(to_geo(shapely.points(pts["x"], pts["y"])))
    _copy(cur, "pipe_point", p)
    cur.execute("SELECT exp_no, id FROM cim.pipe_point WHERE delivery_id = %s", (delivery_id,))
    ids = dict(cur.fetchall())
    s = segs.drop(columns=["a", "b", "x0", "y0", "x1", "y1"]).copy()
    s["start_point_id"] = s["start_exp_no"].map(ids)
    s["end_point_id"] = s["end_exp_no"].map(ids)
    s["county_code"], s["delivery_id"] = county, delivery_id
    lines = shapely.linestrings(np.stack([segs[["x0", "y0"]].to_numpy(), segs[["x1", "y1"]].to_numpy()], axis=1))
    s["geom"] = ewkb(to_geo(lines))
    s["length_m"] = shapely.length(lines)
    _copy(cur, "pipe_segment", s)


def load(conn: psycopg2.extensions.connection, county_data: County, county: str = COUNTY) -> dict[str, int]:
    """Write the county as current rows: one delivery for buildings, one per network."""
    with conn.cursor() as cur:
        write_buildings(cur, county_data.buildings, delivery(cur, ["building"], county), county)
        for net in NETWORKS:
            d = delivery(cur, [f"pipe_point:{net}", f"pipe_segment:{net}"], county)
            write_network(cur, county_data.points[county_data.points["network"] == net],
                          county_data.segments[county_data.segments["network"] == net], d, county)
    conn.commit()
    conn.autocommit = True
    with conn.cursor() as cur:
        for table in ("building", "pipe_segment", "pipe_point"):
            cur.execute(f"VACUUM ANALYZE cim.{table}")
        cur.execute("CHECKPOINT")          # the load's dirty pages written before anything is timed
    conn.autocommit = False
    return {"buildings": len(county_data.buildings), "segments": len(county_data.segments),
            "points": len(county_data.points)}


def redeliver_gas(conn: psycopg2.extensions.connection, county_data: County, moved: int, seed: int = 5,
                  county: str = COUNTY) -> int:
    """A new delivery of the gas network (a re-survey): ``moved`` segments come back 0.5 m
    north (closer to the houses and the power cable beside them), everything else unchanged;
    the old rows are retired as the loader does. Returns the delivery id."""
    rng = np.random.default_rng(seed)
    net = "RQ"
    pts = county_data.points[county_data.points["network"] == net]
    segs = county_data.segments[county_data.segments["network"] == net].copy()
    horizontal = segs.index[segs["y0"] == segs["y1"]].to_numpy()
    picks = rng.choice(horizontal, moved, replace=False)
    segs.loc[picks, ["y0", "y1"]] += 0.5
    with conn.cursor() as cur:
        d = delivery(cur, [f"pipe_point:{net}", f"pipe_segment:{net}"], county, state="loading")
        write_network(cur, pts, segs, d, county)
        for table in ("pipe_point", "pipe_segment"):
            cur.execute(f"UPDATE cim.{table} SET is_current = false WHERE county_code = %s AND network = %s "
                        "AND is_current AND delivery_id <> %s", (county, net, d))
        cur.execute("UPDATE cim.delivery SET state = 'current' WHERE id = %s", (d,))
    conn.commit()
    return d


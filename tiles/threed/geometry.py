"""Vectorised mesh generation in a tile's local frame: LOD1 extrusions, tubes, cylinders, markers.

Placement: every content tile has a local east-north-up (ENU) frame at its centre on the
ellipsoid. Vertices are converted lon/lat/height → ECEF (EPSG:4978, pyproj) and then into that
frame, so a vertex far from the centre is still exactly where it belongs (no flat-earth error);
the tile's ``transform`` (ENU → ECEF) puts the frame back on the globe. CGCS2000 (EPSG:4490) and
WGS 84 differ by centimetres, so lon/lat are used as WGS 84. Heights are written as ellipsoidal
heights although the data are orthometric (1985 National Height Datum): the geoid undulation is
the same for a whole county, so the scene is consistent; a viewer on a terrain model applies
that one offset (see docs/3dtiles.md).

glTF is y-up (glTF 2.0 §3.4) and 3D Tiles rotates it to z-up, so local (e, n, u) is written as
glTF (e, u, −n).
"""

from __future__ import annotations

import functools

import mapbox_earcut
import numpy as np
import shapely
from pyproj import Transformer


@functools.lru_cache(maxsize=1)
def _to_ecef() -> Transformer:
    return Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)


def ecef(lon, lat, h) -> np.ndarray:
    """ECEF (EPSG:4978) coordinates of lon/lat/ellipsoidal height arrays, shape (n, 3)."""
    x, y, z = _to_ecef().transform(np.asarray(lon, "f8"), np.asarray(lat, "f8"), np.asarray(h, "f8"))
    return np.column_stack([x, y, z])


class Frame:
    """Local ENU frame of a tile centred at (lon0, lat0, h0)."""

    def __init__(self, lon0: float, lat0: float, h0: float = 0.0) -> None:
        lo, la = np.radians(lon0), np.radians(lat0)
        self.east = np.array([-np.sin(lo), np.cos(lo), 0.0])
        self.north = np.array([-np.sin(la) * np.cos(lo), -np.sin(la) * np.sin(lo), np.cos(la)])
        self.up = np.array([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])
        self.origin = ecef([lon0], [lat0], [h0])[0]
        self.rot = np.vstack([self.east, self.north, self.up])  # rows: ECEF → ENU

    def enu(self, lon, lat, h) -> np.ndarray:
        """Local ENU coordinates (float64, shape (n, 3))."""
        return (ecef(lon, lat, h) - self.origin) @ self.rot.T

    def transform(self) -> list[float]:
        """The 3D Tiles tile transform (column-major 4×4, ENU → ECEF)."""
        m = np.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = self.east, self.north, self.up, self.origin
        return [float(v) for v in m.T.ravel()]


def to_gltf(v: np.ndarray) -> np.ndarray:
    """ENU (e, n, u) → glTF y-up axes (e, u, −n), as float32."""
    return np.column_stack([v[:, 0], v[:, 2], -v[:, 1]]).astype("f4")


class Mesh:
    """Accumulates triangle-list parts: ENU positions and normals, colours, feature ids, indices."""

    def __init__(self) -> None:
        self.pos: list[np.ndarray] = []
        self.nor: list[np.ndarray] = []
        self.col: list[np.ndarray] = []
        self.fid: list[np.ndarray] = []
        self.idx: list[np.ndarray] = []
        self.count = 0

    def add(self, pos: np.ndarray, nor: np.ndarray, col: np.ndarray, fid: np.ndarray, tri: np.ndarray) -> None:
        """Append vertices and triangles (indices local to ``pos``); triangles are re-oriented so
        their geometric normal agrees with the vertex normals (front faces outward)."""
        if len(tri) == 0:
            return
        a, b, c = pos[tri[:, 0]], pos[tri[:, 1]], pos[tri[:, 2]]
        gn = np.cross(b - a, c - a)
        flip = np.einsum("ij,ij->i", gn, nor[tri[:, 0]] + nor[tri[:, 1]] + nor[tri[:, 2]]) < 0
        tri = tri.copy()
        tri[flip, 1], tri[flip, 2] = tri[flip, 2], tri[flip, 1].copy()
        self.pos.append(pos)
        self.nor.append(nor)
        self.col.append(col)
        self.fid.append(fid)
        self.idx.append(tri.ravel() + self.count)
        self.count += len(pos)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """(positions, normals) in glTF axes, colours, feature ids, indices."""
        pos, nor = np.concatenate(self.pos), np.concatenate(self.nor)
        return (to_gltf(pos), to_gltf(nor), np.concatenate(self.col), np.concatenate(self.fid),
                np.concatenate(self.idx))

    @property
    def empty(self) -> bool:
        """True when nothing was added."""
        return self.count == 0


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def extrude(mesh: Mesh, frame: Frame, geoms: np.ndarray, base: np.ndarray, top: np.ndarray,
            colors: np.ndarray) -> None:
    """LOD1 blocks: each (multi)polygon extruded from ``base`` to ``top`` (metres), walls and roof.

    Feature i is ``geoms[i]``; walls get flat outward normals, roofs are triangulated with earcut
    (holes kept). The underside is omitted (it stands on the ground).
    """
    polys, owner = shapely.get_parts(geoms, return_index=True)
    polys = shapely.orient_polygons(polys, exterior_cw=False)
    rings, ring_poly = shapely.get_rings(polys, return_index=True)
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    keep = np.ones(len(coords), bool)
    keep[:-1] = ring_of[:-1] == ring_of[1:]
    keep[-1] = False                                  # drop each ring's closing point
    coords, ring_of = coords[keep], ring_of[keep]
    feat = owner[ring_poly[ring_of]]                   # feature index per vertex
    n = len(coords)
    vb = frame.enu(coords[:, 0], coords[:, 1], base[feat])
    vt = frame.enu(coords[:, 0], coords[:, 1], top[feat])
    # next vertex within the ring (wrapping to the ring's first vertex)
    ring_len = np.bincount(ring_of, minlength=len(rings))
    ring_start = np.concatenate([[0], np.cumsum(ring_len)[:-1]])
    nxt = np.arange(1, n + 1)
    ends = ring_start + ring_len - 1
    nxt[ends[ring_len > 0]] = ring_start[ring_len > 0]
    # walls: 4 vertices per edge, normal = edge direction rotated clockwise in the horizontal plane
    d = vb[nxt] - vb
    ok = np.hypot(d[:, 0], d[:, 1]) > 1e-4
    i0, i1 = np.nonzero(ok)[0], nxt[ok]
    e = len(i0)
    wn = _unit(np.column_stack([d[ok, 1], -d[ok, 0], np.zeros(e)]))
    wpos = np.stack([vb[i0], vb[i1], vt[i1], vt[i0]], axis=1).reshape(-1, 3)
    wnor = np.repeat(wn, 4, axis=0)
    base_i = np.arange(e) * 4
    wtri = np.concatenate([np.column_stack([base_i, base_i + 1, base_i + 2]),
                           np.column_stack([base_i, base_i + 2, base_i + 3])])
    wfid = np.repeat(feat[i0], 4)
    mesh.add(wpos, wnor, colors[wfid], wfid, wtri)
    # roofs: earcut per polygon on local (e, n) of the top vertices
    poly_ring_count = np.bincount(ring_poly, minlength=len(polys))
    poly_vert = np.bincount(ring_poly[ring_of], minlength=len(polys))
    poly_start = np.concatenate([[0], np.cumsum(poly_vert)[:-1]])
    ring_cursor = 0
    tris = []
    en = vt[:, :2]
    for p in range(len(polys)):
        rc = poly_ring_count[p]
        s = poly_start[p]
        lens = ring_len[ring_cursor:ring_cursor + rc]
        ring_cursor += rc
        if poly_vert[p] < 3:
            continue
        t = mapbox_earcut.triangulate_float64(en[s:s + poly_vert[p]], np.cumsum(lens).astype(np.uint32))
        if len(t):
            tris.append(t.astype(np.int64) + s)
    if tris:
        rtri = np.concatenate(tris).reshape(-1, 3)
        up = np.zeros((n, 3))
        up[:, 2] = 1.0
        mesh.add(vt, up, colors[feat], feat, rtri)


# Cross-section profiles: points in the (side, up) plane of the pipe, their normals, the quads
# between profile points, and the points of an end cap.
_K = 10
_TH = np.linspace(0, 2 * np.pi, _K, endpoint=False)
CIRCLE = (np.column_stack([np.cos(_TH), np.sin(_TH)]), np.column_stack([np.cos(_TH), np.sin(_TH)]),
          np.column_stack([np.arange(_K), (np.arange(_K) + 1) % _K]), np.arange(_K))
_C = np.array([[1, -1], [1, 1], [1, 1], [-1, 1], [-1, 1], [-1, -1], [-1, -1], [1, -1]], float)
RECT = (_C, np.array([[1, 0], [1, 0], [0, 1], [0, 1], [-1, 0], [-1, 0], [0, -1], [0, -1]], float),
        np.array([[0, 1], [2, 3], [4, 5], [6, 7]]), np.array([0, 2, 4, 6]))


def tubes(mesh: Mesh, p0: np.ndarray, p1: np.ndarray, half_w: np.ndarray, half_h: np.ndarray,
          profile: tuple, colors: np.ndarray, fid: np.ndarray, caps: bool = False) -> None:
    """Straight tubes from ENU points ``p0`` to ``p1`` (one per row) with a cross-section profile
    scaled by ``half_w`` (sideways) and ``half_h`` (upwards); optional flat end caps."""
    if len(p0) == 0:
        return
    pts, nrm, quads, cap = profile
    t = _unit(p1 - p0)
    s = np.cross(t, np.array([0.0, 0.0, 1.0]))
    vertical = np.linalg.norm(s, axis=1) < 1e-6
    s[vertical] = [1.0, 0.0, 0.0]
    s = _unit(s)
    u = _unit(np.cross(s, t))
    k = len(pts)
    off = (pts[None, :, 0, None] * half_w[:, None, None] * s[:, None, :]
           + pts[None, :, 1, None] * half_h[:, None, None] * u[:, None, :])           # (E, K, 3)
    ring_n = _unit((nrm[None, :, 0, None] * s[:, None, :] + nrm[None, :, 1, None] * u[:, None, :]).reshape(-1, 3))
    e = len(p0)
    pos = np.concatenate([(p0[:, None, :] + off).reshape(-1, 3), (p1[:, None, :] + off).reshape(-1, 3)])
    nor = np.concatenate([ring_n, ring_n])
    base = (np.arange(e) * k)[:, None]
    a, b = base + quads[None, :, 0], base + quads[None, :, 1]
    c, d = b + e * k, a + e * k
    tri = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    vfid = np.tile(np.repeat(fid, k), 2)
    mesh.add(pos, nor, colors[vfid], vfid, tri)
    if caps:
        for end, sign in ((p0, -1.0), (p1, 1.0)):
            ring = (end[:, None, :] + off[:, cap, :])                                    # (E, C, 3)
            cpos = np.concatenate([ring.reshape(-1, 3), end])
            nc = len(cap)
            cnor = np.concatenate([np.repeat(sign * t, nc, axis=0), sign * t])
            centre = e * nc + np.arange(e)
            rb = (np.arange(e) * nc)[:, None]
            ctri = np.stack([np.repeat(centre, nc).reshape(e, nc), rb + np.arange(nc),
                             rb + (np.arange(nc) + 1) % nc], -1).reshape(-1, 3)
            cfid = np.concatenate([np.repeat(fid, nc), fid])
            mesh.add(cpos, cnor, colors[cfid], cfid, ctri)

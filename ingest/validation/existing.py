"""D01: features that duplicate ones already loaded for the county (current rows of the same
target table within a tolerance), found with an STRtree over the loaded geometries."""

from __future__ import annotations

import numpy as np
import shapely

from cim.db import quote_ident
from ingest.mapping.geometry import DEG_PER_M, local_metric_epsg, to_metric
from ingest.model import LayerBatch
from ingest.validation.core import Ctx, fmt, key_column


def _loaded(ctx: Ctx, batch: LayerBatch, bbox) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    skip_same = bool(ctx.param("D01", "skip_same_source_layer", True))
    sql = (f"SELECT id, delivery_id, ST_AsBinary(geom) FROM cim.{quote_ident(batch.target)} "
           "WHERE county_code = %s AND is_current AND geom && ST_MakeEnvelope(%s, %s, %s, %s, 4490)")
    args = [ctx.delivery.county_code, *(float(v) for v in bbox)]  # numpy 2 scalars repr as np.float64(..)
    if skip_same:
        sql += " AND source_layer IS DISTINCT FROM %s"
        args.append(batch.source_layer)
    with ctx.conn.cursor() as cur:
        cur.execute(sql, args)
        rows = cur.fetchall()
    if not rows:
        return np.array([]), np.array([]), np.array([], dtype=object)
    ids = np.array([r[0] for r in rows])
    dids = np.array([r[1] if r[1] is not None else -1 for r in rows])
    geoms = shapely.from_wkb([bytes(r[2]) for r in rows])
    return ids, dids, geoms


def check_existing(ctx: Ctx, batch: LayerBatch) -> None:
    """Warn about features already loaded (other deliveries or layers) at the same place."""
    if ctx.conn is None or ctx.rule("D01") is None or not ctx.delivery.county_code or not len(batch):
        return
    g = batch.geometries()
    ok = ~(shapely.is_missing(g) | shapely.is_empty(g))
    if not ok.any():
        return
    tol = float(ctx.param("D01", "tolerance_m", 0.05))
    b = shapely.total_bounds(g[ok])
    pad = tol * DEG_PER_M * 2
    ids, dids, old = _loaded(ctx, batch, (b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad))
    if not len(old):
        return
    rows = np.flatnonzero(ok)
    new_c = shapely.centroid(g[rows])
    tree = shapely.STRtree(shapely.centroid(old))
    qi, oi = tree.query(new_c, predicate="dwithin", distance=tol * DEG_PER_M)
    if not len(qi):
        return
    if batch.target in ("pipe_segment", "building", "green_space", "admin_area"):
        epsg = local_metric_epsg(g[rows])
        a = to_metric(g[rows][qi], epsg)
        o = to_metric(old[oi], epsg)
        measure = shapely.length if batch.target == "pipe_segment" else shapely.area
        ma, mo = measure(a), measure(o)
        ratio = float(ctx.param("D01", "size_ratio", 0.01))
        keep = np.abs(ma - mo) <= ratio * np.maximum(np.maximum(ma, mo), 1e-9)
        qi, oi = qi[keep], oi[keep]
    qi, first = np.unique(qi, return_index=True)
    oi = oi[first]
    hit = rows[qi]
    keys = key_column(batch)
    ctx.emit("D01", batch, hit, key=keys.to_numpy()[hit] if keys is not None else None, value=ids[oi],
             zh=fmt("与已入库要素 {i}（成果 {d}）位置重复", i=ids[oi], d=dids[oi]),
             en=fmt("duplicates loaded feature {i} (delivery {d}) at the same place", i=ids[oi], d=dids[oi]))

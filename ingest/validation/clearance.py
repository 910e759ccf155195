"""Q20: crossing pipes whose vertical clear distance (outer wall to outer wall) is below the
minimum for the pair of networks in ``rules.yaml`` (domain.md §2.13, §4.2: GB 50289 table,
0.15 m unless listed).

Crossing pairs come from one STRtree query (predicate ``crosses``: lines that meet in their
interiors, not at shared points); each pipe's elevation at the crossing is interpolated along
the segment and moved from its reference (top / invert / centre) to the pipe centre.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

from ingest.validation.core import Ctx, fmt
from ingest.validation.network import Net, emit, seg_key


def _centre_z(S: pd.DataFrame, t: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre elevation at fraction ``t`` along segments ``idx`` and their outer radius (m)."""
    z0 = S["start_z"].to_numpy(dtype=float)[idx]
    z1 = S["end_z"].to_numpy(dtype=float)[idx]
    z = z0 + t * (z1 - z0)
    size = S["diameter_mm"].to_numpy(dtype=float)[idx]
    size = np.where(np.isfinite(size), size, S["height_mm"].to_numpy(dtype=float)[idx])
    r = np.nan_to_num(size / 2000.0)
    ref = S["z_ref"].to_numpy(dtype=object)[idx]
    return z + np.where(ref == "invert", r, np.where(ref == "top", -r, 0.0)), r


def check_clearance(ctx: Ctx, net: Net) -> None:
    """Warn about crossings with too little vertical clearance."""
    if ctx.rule("Q20") is None or not len(net.S):
        return
    S = net.S.reset_index(drop=True)
    ok = (S["start_z"].notna() & S["end_z"].notna() & S["sx"].notna() & S["ex"].notna()).to_numpy()
    if ok.sum() < 2:
        return
    sub = np.flatnonzero(ok)
    lines = shapely.linestrings(np.stack([S[["sx", "sy"]].to_numpy(float)[sub], S[["ex", "ey"]].to_numpy(float)[sub]],
                                         axis=1))
    tree = shapely.STRtree(lines)
    a, b = tree.query(lines, predicate="crosses")
    keep = a < b
    a, b = a[keep], b[keep]
    if not len(a):
        return
    pts = shapely.centroid(shapely.intersection(lines[a], lines[b]))
    ta = shapely.line_locate_point(lines[a], pts, normalized=True)
    tb = shapely.line_locate_point(lines[b], pts, normalized=True)
    za, ra = _centre_z(S, ta, sub[a])
    zb, rb = _centre_z(S, tb, sub[b])
    clear = np.abs(za - zb) - ra - rb
    pairs = ctx.param("Q20", "pairs", {}) or {}
    na, nb = S["network"].to_numpy(dtype=object)[sub[a]], S["network"].to_numpy(dtype=object)[sub[b]]
    pair = np.where(na.astype(str) <= nb.astype(str), np.char.add(np.char.add(na.astype(str), "-"), nb.astype(str)),
                    np.char.add(np.char.add(nb.astype(str), "-"), na.astype(str)))
    limit = pd.Series(pair).map(pairs).fillna(float(ctx.param("Q20", "min_vertical_m", 0.15))).to_numpy(float)
    bad = np.isfinite(clear) & (clear < limit)
    if not bad.any():
        return
    ia, ib, c, lim = sub[a][bad], sub[b][bad], clear[bad], limit[bad]
    sel = S.iloc[ia]
    other = seg_key(S.iloc[ib]).to_numpy()
    other_net = S["network"].to_numpy()[ib]
    emit(ctx, net, "Q20", sel, key=seg_key(sel), value=np.round(c, 3),
         zh=fmt("与 {n} 管段 {o} 交叉处垂直净距 {c} m，小于 {l} m", n=other_net, o=other, c=c, l=lim),
         en=fmt("crosses {n} segment {o} with a vertical clearance of {c} m (minimum {l} m)", n=other_net, o=other,
                c=c, l=lim))

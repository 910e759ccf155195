"""Clearances between pipes of a delivery (domain.md §2.13, §4.2), limits from ``rules.yaml``.

Q20: crossing pipes whose vertical clear distance (outer wall to outer wall) is below the
minimum for the pair of networks (GB 50289 table, 0.15 m unless listed). Crossing pairs come
from one STRtree query (predicate ``crosses``: lines that meet in their interiors, not at shared
points); each pipe's elevation at the crossing is interpolated along the segment and moved from
its reference (top / invert / centre) to the pipe centre.

Q21: parallel runs closer in plan than the horizontal table (GB 50028 表6.3.3-1 for gas pipes,
optional limits for other pairs). Candidate pairs come from one STRtree query (predicate
``dwithin``, distance per gas segment from the largest limit of its pressure class); the
parallel test, the common stretch and the clearance along it are numpy on the pair arrays.
Segments are taken as straight lines between their ends, as Q20 does.

Both rules also look at what is already loaded (:func:`with_loaded`): with a database at hand,
the county's current segments of the networks this delivery leaves in place, near the
delivery, take part as the *other* pipe of a pair (a new gas main beside a water main loaded
last year). Findings always name a row of the delivery; a pair of two loaded pipes is not the
delivery's to report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import shapely

from ingest.mapping.geometry import DEG_PER_M, Extent, utm_transformer
from ingest.memory import release_free_memory
from ingest.validation.core import Ctx, fmt
from ingest.validation.network import SCOLS, Net, emit, gather, seg_key, value_codes


def _no_ids(n: int) -> pd.arrays.IntegerArray:
    """``n`` missing ids (the delivery's own segments), made without a Python object per row."""
    return pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool))


def with_loaded(ctx: Ctx, net: Net, extent: Extent) -> pd.DataFrame:
    """The delivery's segments plus loaded ones nearby, for Q20 and Q21.

    Loaded segments are the county's current ``pipe_segment`` rows of networks the delivery
    does not replace, within ``loaded_reach_m`` (rules.yaml, Q21) of the delivery's pipelines;
    they get ``bi = -1`` and their id in ``loaded_id``. When there are some, every segment's
    ends are given in the local UTM zone (one frame for both; the source projection differs
    from it by well under a millimetre per metre); else the delivery's own frame is kept.
    ``extent``: that of the delivery's segments, gathered as they were checked.
    """
    S = net.S.reset_index(drop=True)
    S["loaded_id"] = _no_ids(len(S))
    if (ctx.conn is None or not ctx.delivery.county_code or not len(S)
            or (ctx.rule("Q20") is None and ctx.rule("Q21") is None)):
        return S
    if not extent.n:
        return S
    reach = float(ctx.param("Q21", "loaded_reach_m", 20.0)) * DEG_PER_M * 2
    x0, y0, x1, y1 = (float(v) for v in extent.box)
    replaced = sorted({str(n) for n in S["network"].dropna().unique()})
    cols = ", ".join(SCOLS)
    with ctx.conn.cursor() as cur:
        cur.execute(f"SELECT id, {cols}, ST_X(ST_StartPoint(geom)), ST_Y(ST_StartPoint(geom)), "
                    "ST_X(ST_EndPoint(geom)), ST_Y(ST_EndPoint(geom)) FROM cim.pipe_segment "
                    "WHERE county_code = %s AND is_current AND NOT (network = ANY(%s)) "
                    "AND geom && ST_MakeEnvelope(%s, %s, %s, %s, 4490)",
                    (ctx.delivery.county_code, replaced, x0 - reach, y0 - reach, x1 + reach, y1 + reach))
        rows = cur.fetchall()
    if not rows:
        return S
    L = pd.DataFrame(rows, columns=["loaded_id", *SCOLS, "lx0", "ly0", "lx1", "ly1"])
    for c in SCOLS:
        if c in S.columns and pd.api.types.is_float_dtype(S[c]):
            L[c] = pd.to_numeric(L[c], errors="coerce")
    epsg = extent.metric_epsg()
    tr = utm_transformer(epsg)
    L["sx"], L["sy"] = tr.transform(L["lx0"].to_numpy(float), L["ly0"].to_numpy(float))
    L["ex"], L["ey"] = tr.transform(L["lx1"].to_numpy(float), L["ly1"].to_numpy(float))
    L["bi"], L["row"] = -1, -1
    L["loaded_id"] = L["loaded_id"].astype("Int64")
    delivery = gather(net.batches, metric_epsg=epsg)
    assert delivery is not None  # the batches ``net`` was gathered from
    S = delivery.S.reset_index(drop=True)   # the delivery in the same frame
    S["loaded_id"] = _no_ids(len(S))
    return pd.concat([S, L[[c for c in S.columns if c in L.columns]]], ignore_index=True)


def _subjects(S: pd.DataFrame, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each pair as (delivery segment, other), dropping pairs of two loaded segments; also
    the positions in the pair arrays that were kept."""
    loaded = S["bi"].to_numpy() < 0
    keep = np.flatnonzero(~(loaded[a] & loaded[b]))
    a, b = a[keep], b[keep]
    swap = loaded[a]
    return np.where(swap, b, a), np.where(swap, a, b), keep


def _other_key(S: pd.DataFrame, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How a finding names the other segment: its point numbers, and for a loaded one its id."""
    key = seg_key(S.iloc[j]).to_numpy(dtype=object)
    lid = S["loaded_id"].to_numpy(dtype=object)[j]
    loaded = S["bi"].to_numpy()[j] < 0
    zh = np.where(loaded, [f"{k}（已入库 #{i}）" for k, i in zip(key, lid, strict=True)], key)
    en = np.where(loaded, [f"{k} (loaded #{i})" for k, i in zip(key, lid, strict=True)], key)
    return zh, en


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


_STRIP = 50_000
"""Segments of one strip of the plane (:func:`_by_strips`): its lines and their tree are some
17 MB of GEOS objects, where a tree over a whole 500 000-segment network holds 170 MB."""


def _by_strips(extents: list[tuple[np.ndarray, np.ndarray]],
               find: Callable[..., tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Pairs found a vertical strip of the plane at a time, each pair once, sorted.

    ``extents``: for each set of items (the segments of a tree, the boxes that query it), their
    x ranges as (low, high) arrays. The strips hold about ``_STRIP`` items of the first set each
    (cut at quantiles of their centres); an item belongs to every strip its x range meets, so two
    items whose x ranges overlap share a strip and no pair is missed. ``find`` gets, for each
    set, the positions of its items in the strip and returns the pairs it finds among them as two
    arrays of non-negative integers; a pair found in two strips is kept once."""
    lo0, hi0 = extents[0]
    k = -(-len(lo0) // _STRIP)
    inner = np.quantile((lo0 + hi0) / 2, np.linspace(0, 1, k + 1)[1:-1]) if k > 1 else np.zeros(0)
    cuts = np.concatenate([[-np.inf], inner, [np.inf]])
    found = []
    for s in range(len(cuts) - 1):
        found.append(find(*(np.flatnonzero((hi >= cuts[s]) & (lo <= cuts[s + 1])) for lo, hi in extents)))
        release_free_memory()               # the strip's GEOS lines and tree, freed in small pieces
    i = np.concatenate([f[0] for f in found]).astype(np.int64)
    j = np.concatenate([f[1] for f in found]).astype(np.int64)
    n = int(max(i.max(initial=0), j.max(initial=0))) + 1
    pairs = np.unique(i * n + j)
    return pairs // n, pairs % n


def _span(x0: np.ndarray, x1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The x ranges (low, high) of segments from ``x0`` to ``x1``, for :func:`_by_strips`."""
    return np.minimum(x0, x1), np.maximum(x0, x1)


_CCW_BOUND = (3.0 + 16.0 * 2.0 ** -53) * 2.0 ** -53
"""Relative error bound of a turn's sign computed in floating point (Shewchuk's orient2d filter,
``ccwerrboundA``): beyond it the sign is the exact one."""


_NEAR_M = 1e-6
"""An end closer than this to the other segment's line (a micron: far beyond rounding, far below
any survey's precision) is left to GEOS, which counts an intersection that rounds to an end as
at that end (a T, not a crossing)."""


def _turn(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sign of the turn p → q → r for rows of points (1 left, −1 right, 0 in line) and
    whether it is settled: beyond the rounding error bound and ``r`` at least :data:`_NEAR_M`
    off the line p q, or exactly zero (both products zero: ``r`` equals ``p`` or ``q`` in a
    coordinate, as at a shared end)."""
    left = (p[:, 0] - r[:, 0]) * (q[:, 1] - r[:, 1])
    right = (p[:, 1] - r[:, 1]) * (q[:, 0] - r[:, 0])
    det = left - right
    size = np.hypot(q[:, 0] - p[:, 0], q[:, 1] - p[:, 1])
    sure = ((np.abs(det) > _CCW_BOUND * (np.abs(left) + np.abs(right))) & (np.abs(det) > _NEAR_M * size)) \
        | ((left == 0) & (right == 0))
    return np.sign(det), sure


def _crosses(ea: np.ndarray, eb: np.ndarray, la: np.ndarray, lb: np.ndarray) -> np.ndarray:
    """Whether straight segments ``ea[i]`` and ``eb[i]`` (rows of x0, y0, x1, y1) cross: meet in
    one point inside both (what GEOS's ``crosses`` says of two straight lines; touching at an
    end, a T, or running along each other is no crossing). Each end's side of the other
    segment decides, from turn signs that are settled; the pairs some unsettled sign leaves
    open (an end within a micron of the other line) are asked of GEOS (``la``, ``lb``: the lines)."""
    a0, a1, b0, b1 = ea[:, :2], ea[:, 2:], eb[:, :2], eb[:, 2:]
    s1, k1 = _turn(a0, a1, b0)
    s2, k2 = _turn(a0, a1, b1)
    s3, k3 = _turn(b0, b1, a0)
    s4, k4 = _turn(b0, b1, a1)
    apart = (k1 & k2 & (s1 * s2 >= 0)) | (k3 & k4 & (s3 * s4 >= 0))    # both ends on one side, or on the line
    known = (k1 & k2 & k3 & k4) | apart
    hit = known & ~apart & (s1 * s2 < 0) & (s3 * s4 < 0)
    open_ = np.flatnonzero(~known)
    if len(open_):
        hit[open_] = shapely.crosses(la[open_], lb[open_])
    return hit


def _lines(ends: np.ndarray) -> Any:
    """Straight lines from rows of (x0, y0, x1, y1)."""
    return shapely.linestrings(ends.reshape(-1, 2, 2))


def check_clearance(ctx: Ctx, net: Net, S: pd.DataFrame | None = None) -> None:
    """Warn about crossings with too little vertical clearance (``S``: :func:`with_loaded`)."""
    if ctx.rule("Q20") is None or not len(net.S):
        return
    S = net.S.reset_index(drop=True) if S is None else S
    ok = (S["start_z"].notna() & S["end_z"].notna() & S["sx"].notna() & S["ex"].notna()).to_numpy()
    if ok.sum() < 2:
        return
    sub = np.flatnonzero(ok)
    cols = [S[c].to_numpy(dtype=float) for c in ("sx", "sy", "ex", "ey")]    # the frame's own arrays

    def ends(rows: np.ndarray) -> np.ndarray:
        return np.stack([c[sub[rows]] for c in cols], axis=1)

    def crossing(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e = ends(m)
        lines = _lines(e)
        a, b = shapely.STRtree(lines).query(lines)          # envelopes that meet
        keep = a < b
        a, b = a[keep], b[keep]
        hit = _crosses(e[a], e[b], lines[a], lines[b])
        return m[a[hit]], m[b[hit]]

    a, b = _by_strips([_span(cols[0][sub], cols[2][sub])], crossing)
    if not len(a):
        return
    la, lb = _lines(ends(a)), _lines(ends(b))
    pts = shapely.centroid(shapely.intersection(la, lb))
    ta: Any = shapely.line_locate_point(la, pts, normalized=True)   # arrays in, arrays out
    tb: Any = shapely.line_locate_point(lb, pts, normalized=True)
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
    ia, ib, kept = _subjects(S, sub[a][bad], sub[b][bad])
    c, lim = clear[bad][kept], limit[bad][kept]
    if not len(ia):
        return
    sel = S.iloc[ia]
    other_zh, other_en = _other_key(S, ib)
    other_net = S["network"].to_numpy()[ib]
    emit(ctx, net, "Q20", sel, key=seg_key(sel), value=np.round(c, 3),
         zh=fmt("与 {n} 管段 {o} 交叉处垂直净距 {c} m，小于 {l} m", n=other_net, o=other_zh, c=c, l=lim),
         en=fmt("crosses {n} segment {o} with a vertical clearance of {c} m (minimum {l} m)", n=other_net,
                o=other_en, c=c, l=lim))



GAS = "RQ"


def _in(codes: np.ndarray, uniques: np.ndarray, allowed) -> np.ndarray:
    """Rows whose value is in ``allowed`` (one set lookup per distinct value)."""
    hit = np.array([u in allowed for u in uniques] + [False])
    return hit[codes]


def _partnered(present: set, gas_limited: set, pairs: dict[tuple, float]) -> set:
    """The networks of ``present`` that have a Q21 limit with one of ``present`` (themselves
    included): gas with gas and with the networks of its tables (``gas_limited``), a network
    pair of ``pairs``. A segment of any other network meets no limit, whatever lies beside it."""
    def limited(a, b) -> bool:
        return (a == GAS and (b == GAS or b in gas_limited)) or (b == GAS and a in gas_limited) \
            or (a, b) in pairs or (b, a) in pairs
    return {a for a in present if any(limited(a, b) for b in present)}


def check_parallel(ctx: Ctx, net: Net, S: pd.DataFrame | None = None) -> None:
    """Q21: warn about parallel runs closer than the horizontal clear distance of their pair
    (``S``: :func:`with_loaded`)."""
    if ctx.rule("Q21") is None or not len(net.S):
        return
    par = ctx.rules["Q21"].params
    gas_t, cond_t = par.get("gas") or {}, par.get("gas_conduit") or {}
    pairs = {tuple(str(k).split("-")): float(v) for k, v in (par.get("pairs") or {}).items()}
    pair_nets = {n for k in pairs for n in k}
    classes = par.get("classes") or {}
    cls_list = list(classes) or ["-"]
    S = net.S.reset_index(drop=True) if S is None else S
    ncode, nets = value_codes(S["network"])
    bcode, burials = value_codes(S["burial_type"])
    ok = ~_in(bcode, burials, set(par.get("skip_burial_types") or []))
    ok &= _in(ncode, nets, _partnered({nets[c] for c in np.unique(ncode[ok]) if c >= 0}, {*gas_t, *cond_t}, pairs))
    if ok.sum() < 2:
        return
    xy = S[["sx", "sy", "ex", "ey"]].to_numpy(float)
    d = xy[:, 2:] - xy[:, :2]
    length = np.hypot(d[:, 0], d[:, 1])
    ok &= np.isfinite(xy).all(axis=1) & (length > 0)
    gas = ok & _in(ncode, nets, {GAS})
    query = gas | (ok & _in(ncode, nets, pair_nets))
    if not query.any() or ok.sum() < 2:
        return
    conduit = _in(bcode, burials, set(par.get("conduit_burial_types") or []))
    size = S["diameter_mm"].to_numpy(dtype=float)
    r = np.nan_to_num(np.where(np.isfinite(size), size, S["width_mm"].to_numpy(dtype=float)) / 2000.0)

    # pressure-class column (index into cls_list) of each gas pipe
    alias = par.get("class_alias") or {}
    unknown = cls_list.index(par["unknown_class"]) if par.get("unknown_class") in classes else 0
    pcode, pcs = value_codes(S["pressure_class"])
    col_of = np.array([cls_list.index(alias.get(c, c)) if alias.get(c, c) in classes else unknown for c in pcs]
                      + [unknown], dtype=np.int64)
    col = col_of[pcode]

    # limit tables over (network code, class column) and (network code, network code)
    nan = float("nan")
    direct = np.array([[float(gas_t.get(n, {}).get(c, nan)) for c in cls_list] for n in nets] + [[nan] * len(cls_list)])
    inside = np.array([[float(cond_t.get(n, {}).get(c, nan)) for c in cls_list] for n in nets] + [[nan] * len(cls_list)])
    pair_m = np.full((len(nets) + 1, len(nets) + 1), nan)
    for (n1, n2), v in pairs.items():
        for x, y in ((n1, n2), (n2, n1)):
            if x in nets and y in nets:
                pair_m[list(nets).index(x), list(nets).index(y)] = v
    gg = par.get("gas_gas") or {}
    small, large = float(gg.get("small_m", 0.4)), float(gg.get("large_m", 0.5))
    dn_cut = float(gg.get("large_above_dn_mm", 300))

    # how far each query segment looks: its largest possible limit plus both half widths
    col_max = np.fmax.reduce(np.vstack([direct, inside, np.full((1, len(cls_list)), large)]), axis=0)
    net_max = np.fmax.reduce(np.hstack([pair_m, np.zeros((len(pair_m), 1))]), axis=1)
    reach = np.where(gas, np.fmax(col_max[col], net_max[ncode]), net_max[ncode])

    # candidates: segments whose envelope meets a query segment's envelope grown by that reach
    # (an envelope query; the exact distances along the common stretch are computed below)
    sub = np.flatnonzero(ok)
    q = np.flatnonzero(query)
    grow = np.full(len(S), -1.0)
    grow[q] = reach[q] + r[q] + r[sub].max()
    lo = np.minimum(xy[q, :2], xy[q, 2:]) - grow[q, None]
    hi = np.maximum(xy[q, :2], xy[q, 2:]) + grow[q, None]

    def near(m: np.ndarray, mq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        qi, b = shapely.STRtree(_lines(xy[sub[m]])).query(shapely.box(lo[mq, 0], lo[mq, 1], hi[mq, 0], hi[mq, 1]))
        return q[mq[qi]], sub[m[b]]

    i, j = _by_strips([_span(xy[sub, 0], xy[sub, 2]), (lo[:, 0], hi[:, 0])], near)
    # each pair once: a pair of two query segments is always found from the one grown more
    keep = (i != j) & ((grow[j] < grow[i]) | ((grow[j] == grow[i]) & (i < j)))
    i, j = i[keep], j[keep]
    flip = ~gas[i] & gas[j]                                  # the gas pipe first
    i, j = np.where(flip, j, i), np.where(flip, i, j)

    # roughly parallel, with a common stretch of min_run_m or more (measured along i)
    run_min = float(par.get("min_run_m", 2.0))
    u = d[i] / length[i, None]
    cos = np.abs((u * d[j]).sum(1)) / length[j]
    t0 = ((xy[j, :2] - xy[i, :2]) * u).sum(1)
    t1 = ((xy[j, 2:] - xy[i, :2]) * u).sum(1)
    lo, hi = np.maximum(0.0, np.minimum(t0, t1)), np.minimum(length[i], np.maximum(t0, t1))
    sel = (cos >= np.cos(np.radians(float(par.get("max_angle_deg", 30.0))))) & (hi - lo >= run_min)
    i, j, t0, t1, lo, hi, u = i[sel], j[sel], t0[sel], t1[sel], lo[sel], hi[sel], u[sel]
    if not len(i):
        return

    # limit of each pair: gas-gas by the larger DN, gas-other by class and burial, else pairs
    gi, gj = gas[i], gas[j]
    c, nj = col[i], ncode[j]
    limit = np.where(conduit[j] & np.isfinite(inside[nj, c]), inside[nj, c], direct[nj, c])
    limit = np.where(gi & gj, np.where(np.fmax(size[i], size[j]) > dn_cut, large, small), limit)
    limit = np.where(gi, limit, pair_m[ncode[i], nj])

    # offset of j from i's axis at both ends of the common stretch (linear in between)
    v0, v1 = xy[j, :2] - xy[i, :2], xy[j, 2:] - xy[i, :2]
    n0 = u[:, 0] * v0[:, 1] - u[:, 1] * v0[:, 0]
    n1 = u[:, 0] * v1[:, 1] - u[:, 1] * v1[:, 0]
    slope = (n1 - n0) / (t1 - t0)
    o_lo, o_hi = np.abs(n0 + (lo - t0) * slope), np.abs(n0 + (hi - t0) * slope)
    omin, omax = np.minimum(o_lo, o_hi), np.maximum(o_lo, o_hi)
    need = limit + r[i] + r[j]                               # centre-line distance the limit asks for
    with np.errstate(invalid="ignore", divide="ignore"):
        close = np.where(omax < need, hi - lo, np.where(omin >= need, 0.0, (hi - lo) * (need - omin) / (omax - omin)))
    bad = np.isfinite(limit) & (close >= run_min)
    i, j, limit, close, clear = i[bad], j[bad], limit[bad], close[bad], (omin - r[i] - r[j])[bad]
    if not len(i):
        return
    far = shapely.distance(_lines(xy[i]), _lines(xy[j])) > float(par.get("touch_m", 0.01))
    i, j, limit, close, clear = i[far], j[far], limit[far], close[far], clear[far]   # touching or crossing: no run
    if not len(i):
        return

    gi, gj = gas[i], gas[j]
    ni, nj = nets[ncode[i]].astype(str), nets[ncode[j]].astype(str)
    name = [classes.get(cls_list[k], [cls_list[k]]) for k in col[i]]
    pair = ["-".join(sorted(p)) for p in zip(ni, nj, strict=True)]
    why_zh = np.array([("燃气管之间" if b else f"{nm[0]}燃气管") if a else f"管线 {p}"
                       for a, b, nm, p in zip(gi, gj, name, pair, strict=True)], dtype=object)
    why_en = np.array([("between gas pipes" if b else f"{nm[-1]} gas") if a else f"pair {p}"
                       for a, b, nm, p in zip(gi, gj, name, pair, strict=True)], dtype=object)
    subject, other, kept = _subjects(S, i, j)
    if not len(subject):
        return
    sel = S.iloc[subject]
    other_zh, other_en = _other_key(S, other)
    n_other = nets[ncode[other]].astype(str)
    run, clear, limit = np.round(close[kept], 1), np.round(clear[kept], 3), limit[kept]
    emit(ctx, net, "Q21", sel, key=seg_key(sel), value=clear,
         zh=fmt("与 {n} 管段 {o} 平行 {s} m，水平净距 {c} m，小于 {l} m（{w}）", n=n_other, o=other_zh, s=run,
                c=clear, l=limit, w=why_zh[kept]),
         en=fmt("runs {s} m parallel to {n} segment {o} with a horizontal clearance of {c} m (minimum {l} m, {w})",
                n=n_other, o=other_en, s=run, c=clear, l=limit, w=why_en[kept]))

"""Gas hazards planted for the hazard-ledger benchmark (``cim demo generate --hazards N``).

The default demo keeps every clearance of GB 50028-2006 表6.3.3-1, so the automatic rules G01–G03
of :mod:`cimplus.hazards` find nothing in it. ``--hazards N`` adds N of each kind to the gas
delivery (燃气管线.zip), as a re-survey might find them, after every other layer is generated
(no random draw is taken, so the other files keep their bytes):

- **G01** 占压: a 中压B service line (DN63) from a gas main point straight through the nearest
  house to a reserved end (预留口) 2 m beyond its far wall;
- **G02** 间距不足: a service line from a main point ending 0.4 m short of the nearest house's
  wall (outer wall 0.37 m from the footprint, 1.0 m required for 中压B);
- **G03** 平行净距不足: a DN160 中压B gas segment of two new points running alongside a water
  main segment 0.25 m clear of it (0.5 m required), over the water segment's whole length.

Each planted segment is listed in the manifest under ``hazards`` (rule id, segment key, the other
facility), which the benchmark checks against the findings.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

from demo.town import Town

CLEAR_G02_M = 0.4          # end of the service line from the wall (centre line)
CLEAR_G03_M = 0.25         # outer wall to outer wall beside the water main
BEYOND_G01_M = 2.0         # reserved end beyond the far wall
MAX_REACH_M = 45.0         # longest service line planted (the survey limit is 75 m)


def _nearest_houses(points: np.ndarray, bld: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest footprint to each point and its distance (local frame)."""
    polys = bld["geometry"].to_numpy()
    tree = shapely.STRtree(polys)
    pt, idx = tree.query_nearest(shapely.points(points), return_distance=False, all_matches=False)
    out = np.full(len(points), -1)
    out[pt] = idx
    return out, shapely.distance(shapely.points(points), polys[np.maximum(out, 0)])


def _spread(cands: np.ndarray, n: int) -> np.ndarray:
    """``n`` of ``cands`` evenly spread over the list (all of them when fewer)."""
    if len(cands) <= n:
        return cands
    return cands[np.linspace(0, len(cands) - 1, n).round().astype(int)]


def _point_rows(town: Town, template: pd.Series, names: list[str], xy: np.ndarray) -> pd.DataFrame:
    """New gas points (预留口 / 转折点) copied from a template row."""
    rows = pd.DataFrame([template] * len(names)).reset_index(drop=True)
    rows["物探点号"] = rows["图上点号"] = names
    rows["x"], rows["y"] = xy[:, 0], xy[:, 1]
    rows["地面高程"] = np.round(town.ground(xy[:, 0], xy[:, 1]), 2)
    rows["特征"], rows["附属物"], rows["点符号代码"], rows["井深"] = "预留口", None, "53032105", np.nan
    return rows


def _line_rows(template: pd.Series, starts: list[str], ends: list[str], ground: dict[str, float]) -> pd.DataFrame:
    """New gas segments copied from a template row, depths kept, elevations from the ground."""
    rows = pd.DataFrame([template] * len(starts)).reset_index(drop=True)
    rows["起点点号"], rows["终点点号"] = starts, ends
    rows["起点高程"] = np.round([ground[s] for s in starts] - rows["起点埋深"].to_numpy(float), 3)
    rows["终点高程"] = np.round([ground[e] for e in ends] - rows["终点埋深"].to_numpy(float), 3)
    rows["_u"], rows["_v"] = -1, -1
    return rows


def plant(town: Town, rqp: pd.DataFrame, rql: pd.DataFrame, jsp: pd.DataFrame, jsl: pd.DataFrame,
          bld: pd.DataFrame, n: int) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """Gas points and lines with ``n`` planted hazards of each of G01, G02 and G03 (local frame)."""
    xy = rqp[["x", "y"]].to_numpy(float)
    mains = np.flatnonzero((rqp["附属物"].isin(["阀门", "测试桩", "凝水缸"]) | (rqp["特征"] == "转折点")).to_numpy())
    house, dist = _nearest_houses(xy[mains], bld)
    near = mains[(house >= 0) & (dist < MAX_REACH_M - 20)]
    house_of = dict(zip(mains, house, strict=True))
    picks = _spread(near, 2 * n)
    g01, g02 = picks[0::2], picks[1::2]
    polys = bld["geometry"].to_numpy()
    codes = bld["建筑编号"].to_numpy()
    names = iter(f"RQ{k:04d}" for k in range(len(rqp) + 1, 10 ** 9))
    stub = rql[rql["管径"] == "63"].iloc[0]
    main = rql[(rql["管径"] == "160") & (rql["压力"] == "中压B")].iloc[0]
    new_pts, ends, starts, planted = [], [], [], []

    for rule, sel in (("G01", g01), ("G02", g02)):
        for k in sel:
            p, poly = xy[k], polys[house_of[k]]
            if rule == "G01":
                c = np.asarray(shapely.centroid(poly).coords[0])
                u = (c - p) / np.hypot(*(c - p))
                far = max(np.hypot(*(np.asarray(poly.exterior.coords) - c).T))
                end = c + u * (far + BEYOND_G01_M)
            else:
                q = np.asarray(shapely.shortest_line(shapely.Point(p), poly).coords[1])
                u = (q - p) / np.hypot(*(q - p))
                end = q - u * CLEAR_G02_M
            name = next(names)
            new_pts.append((name, end))
            starts.append(rqp["物探点号"].iloc[k])
            ends.append(name)
            planted.append({"rule_id": rule, "segment": f"{starts[-1]}-{name}", "building": codes[house_of[k]]})

    # G03: a gas segment beside a water main, over its whole length
    jxy = dict(zip(jsp["物探点号"], jsp[["x", "y"]].to_numpy(float), strict=True))
    wide = jsl[jsl["管径"].isin(["200", "300", "400"])]
    a = np.array([jxy[s] for s in wide["起点点号"]])
    b = np.array([jxy[e] for e in wide["终点点号"]])
    long_enough = np.flatnonzero(np.hypot(*(b - a).T) >= 20.0)
    r_gas = float(main["管径"]) / 2000.0
    for k in _spread(long_enough, n):
        d = (b[k] - a[k]) / np.hypot(*(b[k] - a[k]))
        off = np.array([-d[1], d[0]]) * (CLEAR_G03_M + r_gas + float(wide["管径"].iloc[k]) / 2000.0)
        s, e = next(names), next(names)
        new_pts += [(s, a[k] + off), (e, b[k] + off)]
        starts.append(s)
        ends.append(e)
        water = f"{wide['起点点号'].iloc[k]}-{wide['终点点号'].iloc[k]}"
        planted.append({"rule_id": "G03", "segment": f"{s}-{e}", "other": f"JS:{water}"})

    pts = _point_rows(town, rqp.iloc[0], [p for p, _ in new_pts], np.array([q for _, q in new_pts]))
    pts["所在道路"] = rqp["所在道路"].iloc[0]
    pts = pd.concat([rqp, pts], ignore_index=True)
    ground = dict(zip(pts["物探点号"], pts["地面高程"], strict=True))
    n_service = len(g01) + len(g02)
    lines = pd.concat([rql, _line_rows(stub, starts[:n_service], ends[:n_service], ground),
                       _line_rows(main, starts[n_service:], ends[n_service:], ground)], ignore_index=True)
    return pts, lines, planted

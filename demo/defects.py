"""Deliberate defects planted in the demo delivery, each one a finding the report must show.

``warnings`` (the default) plants only defects whose rules are warnings (domain.md §2.13), so
the delivery still loads; ``errors`` adds defects whose rules reject a delivery (Q01 duplicate
point number, Q05 line to a missing point, Q07 start = end); ``none`` plants nothing.
Every defect is recorded in the manifest with its rule id, layer and key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import shapely

from demo.graph import Graph

MODES = ("warnings", "errors", "none")


@dataclass
class Defect:
    """One planted defect as the manifest records it."""

    rule_id: str
    severity: str
    file: str
    layer: str
    key: str
    field: str | None
    description_zh: str
    description_en: str
    row: int | None = None

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


def _trunk_edges(g: Graph) -> list[int]:
    """Edges between two manholes of a north-south storm trunk, north of the riverside road."""
    role = g.role
    return [e for e, (a, b, k) in enumerate(zip(g.u, g.v, g.e_kind, strict=True))
            if k == "main" and role[a] == "mid" and role[b] == "mid" and g.x[a] == g.x[b]]


def reverse_slope(g: Graph, h: dict) -> tuple[int, Defect]:
    """Q15: raise one trunk manhole so the pipe into it climbs (倒坡)."""
    edges = _trunk_edges(g)
    e = edges[len(edges) // 3]
    a, b = g.u[e], g.v[e]
    h["invert"][b] = round(h["invert"][a] + 0.08, 3)
    return e, Defect("Q15", "warning", "排水管线.zip", "YSLINE", f"YS{a + 1:04d}-YS{b + 1:04d}",
                     "终点高程", "雨水管段管底高程沿流向升高 0.08 m（倒坡）",
                     "storm pipe invert rises 0.08 m along the flow direction (reverse slope)")


def smaller_downstream(g: Graph, h: dict, avoid: int) -> tuple[int, Defect]:
    """Q16: one trunk pipe one size smaller than the pipe feeding it (大管接小管)."""
    dn = h["dn"]
    edges = [e for e in _trunk_edges(g) if dn[e] >= 600]
    into = {g.v[e]: e for e in _trunk_edges(g)}
    bad = {g.u[avoid], g.v[avoid]}
    cands = [e for e in edges if g.u[e] in into and dn[into[g.u[e]]] == dn[e] and not {g.u[e], g.v[e]} & bad
             and g.x[g.u[e]] != g.x[g.u[avoid]]]
    e = cands[len(cands) // 2]
    dn[e] = {600: 400, 800: 600, 1000: 800, 1200: 1000}[int(dn[e])]
    a, b = g.u[e], g.v[e]
    return e, Defect("Q16", "warning", "排水管线.zip", "YSLINE", f"YS{a + 1:04d}-YS{b + 1:04d}", "管径",
                     f"下游管径 DN{int(dn[e])} 小于上游管径", f"downstream pipe DN{int(dn[e])} is smaller than the pipe upstream")


def cross_connection(ys: Graph, hy: dict, ws: Graph, hw: dict) -> tuple[int, int, Defect]:
    """Q18: a storm branch head connected to the sewer manhole across the road (雨污混接)."""
    fed = {v for v, kind in zip(ys.v, ys.e_kind, strict=True) if kind == "main"}
    heads = [k for k, r in enumerate(ys.role) if r == "mid" and k not in fed]
    wx, wy = np.array(ws.x), np.array(ws.y)
    wmid = np.array([r == "mid" for r in ws.role])
    for k in heads[len(heads) // 2:]:
        d = np.hypot(wx - ys.x[k], wy - ys.y[k])
        d[~wmid] = np.inf
        w = int(d.argmin())
        if d[w] < 15 and hw["invert"][w] < hy["invert"][k] - 0.1:
            return k, w, Defect("Q18", "warning", "排水管线.zip", "YSLINE", f"YS{k + 1:04d}-WS{w + 1:04d}", "终点点号",
                                "雨水管接入污水检查井（雨污混接）", "storm pipe connected to a sewer manhole (cross-connection)")
    raise RuntimeError("no storm/sewer pair for the cross-connection defect")


def orphan_point(pts: pd.DataFrame, net: str) -> Defect:
    """Q06: an abandoned manhole no line uses (孤立点)."""
    key = pts["物探点号"].iloc[-1]
    return Defect("Q06", "warning", "排水管线.zip", f"{net}POINT", key, "物探点号",
                  "检查井未与任何管段连接（孤立点）", "manhole not connected to any pipe segment (orphan point)",
                  row=len(pts))


def building_defects(df: pd.DataFrame, rng: np.random.Generator) -> list[Defect]:
    """Height contradicting floors, and one bow-tie (self-intersecting) footprint that make_valid repairs."""
    tall = np.flatnonzero((df["地上层数"].to_numpy() >= 11) & df["建筑高度"].notna().to_numpy())
    i = int(tall[len(tall) // 2])
    df.loc[i, "建筑高度"] = 9.0
    others = np.flatnonzero((df["是否自建房"].to_numpy() == "否") & (np.arange(len(df)) != i))
    j = int(others[len(others) // 3])
    c = np.asarray(df.loc[j, "geometry"].exterior.coords)
    # the last edge swings out across the first one: a self-intersection make_valid repairs
    kink = c[0] + 0.25 * (c[1] - c[0]) + 0.15 * (c[0] - c[3])
    df.at[j, "geometry"] = shapely.Polygon(np.array([c[0], c[1], c[2], c[3], kink, c[0]]))
    return [Defect("B01", "warning", "房屋建筑调查.zip", "房屋建筑", df.loc[i, "建筑编号"], "建筑高度",
                   f"建筑高度 9.0 m 与地上层数 {int(df.loc[i, '地上层数'])} 层不符",
                   f"height 9.0 m contradicts {int(df.loc[i, '地上层数'])} floors above ground", row=i + 1),
            Defect("G01", "warning", "房屋建筑调查.zip", "房屋建筑", df.loc[j, "建筑编号"], "geometry",
                   "建筑轮廓自相交（可修复）", "self-intersecting footprint (repairable)", row=j + 1)]

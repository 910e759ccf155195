"""Gravity drainage of the demo town: storm (YS) and sewer (WS) networks.

Storm water runs south along every north-south road to an outfall (排放口) on the river bank;
east-west branches drain east into the next trunk. Sewage runs the same way but branches drain
west, and the trunks end in an interceptor along the riverside road that carries the flow to the
nearest pump station (泵站). Because storm branches run east and sewer branches west, the two
systems never cross. Manholes stand every 30–60 m; storm inlets (雨水口, 平箅/立箅/联合) sit on
the kerb line and join their manhole by a DN300 connection.

Diameters follow the accumulated upstream pipe length (so they never shrink downstream) and
inverts are set node by node from upstream: each node's invert is the lowest of its incoming
pipes' ends after their minimum slopes (GB 50014 table 4.2.10 style values [I]) and of the
ground minus the minimum cover over the crown. All pipes at a manhole share its invert (井底高程),
so the point table and the line table agree (管底平接).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

from demo.graph import KERB, OFFSETS, Graph, junctions, outward, topo_order
from demo.town import FLOOD_WATER_Z, NORMAL_WATER_Z, RIVER_HALF_WIDTH, RIVER_NAME, Town

MIN_SLOPE = {300: 0.0025, 400: 0.002, 500: 0.0018, 600: 0.0015, 800: 0.0012, 1000: 0.001, 1200: 0.0008}
# accumulated upstream pipe length (m) → diameter (mm)
DN_STEPS = {"YS": [(250, 300), (700, 400), (1600, 600), (3200, 800), (6500, 1000), (np.inf, 1200)],
            "WS": [(500, 300), (1800, 400), (4000, 500), (8000, 600), (16000, 800), (np.inf, 1000)]}
MIN_COVER = 2.1          # ground to crown (m): below the gas, water and telecom strata
INLET_DEPTH = 1.0
CROSSING_CLEARANCE = 0.25  # m between crossing drains (Q20 asks ≥ 0.15; the survey rounds to cm)
OWNER = "鼎城区城市排水事务中心"


def build(town: Town, net: str, rng: np.random.Generator) -> Graph:
    """The graph of one gravity network, edges pointing downstream."""
    g = Graph()
    J = junctions(town, g, net)
    nx, ny = len(town.ns_roads), len(town.ew_roads)
    for i, ns in enumerate(town.ns_roads):
        for j in range(ny - 1, 0, -1):
            g.path([J[i][j], *g.mids(J[i][j], J[i][j - 1], 55, ns, rng), J[i][j - 1]], ns)
    for j, ew in enumerate(town.ew_roads):
        if net == "WS" and j == 0:
            continue
        for i in range(nx - 1):
            m = g.mids(J[i][j], J[i + 1][j], 55, ew, rng)
            g.path([*m, J[i + 1][j]] if net == "YS" else [*m[::-1], J[i][j]], ew)
    river_road = town.ew_roads[0]
    if net == "YS":
        for i, ns in enumerate(town.ns_roads):
            x = g.x[J[i][0]]
            o = g.node(x, float(town.river_y(x)) + RIVER_HALF_WIDTH + 2.0, "outfall", river_road)
            g.edge(J[i][0], o, ns)
    else:
        pumps = [p for p in range(nx) if p % 4 == 2] or [nx // 2]
        for i in range(nx - 1):
            m = g.mids(J[i][0], J[i + 1][0], 55, river_road, rng)
            g.path(_interceptor_chain(J, i, m, pumps), river_road)
        for p in pumps:
            k = g.node(g.x[J[p][0]], river_road.pos - river_road.width / 2 - 8.0, "pump", river_road)
            g.edge(J[p][0], k, town.ns_roads[p])
    if net == "YS":
        roads = {r.name: r for r in town.ns_roads + town.ew_roads}
        for k in [k for k, r in enumerate(g.role) if r == "mid"]:
            road = roads[g.road[k]]
            ix, iy = outward(g, k, road, town, KERB[road.road_class] - 0.4, np.sign(OFFSETS["YS"][road.road_class]))
            g.edge(g.node(ix, iy, "inlet", road), k, road, "inlet")
    return g


def _interceptor_chain(J: list[list[int]], i: int, mids: list[int], pumps: list[int]) -> list[int]:
    """Nodes of interceptor interval (i, i+1) in flow order, towards the nearest pump station.

    Every junction drains one way only; on the ridge between two pump catchments the interval
    starts at a head manhole instead of the junction that already drains the other way.
    """
    def direction(k: int) -> str:
        p = min(pumps, key=lambda q: (abs(q - k), q))
        return "P" if p == k else ("E" if p > k else "W")

    if direction(i) == "E":
        return [J[i][0], *mids, J[i + 1][0]]
    if direction(i + 1) == "W":
        return [J[i + 1][0], *mids[::-1], J[i][0]]
    return [*mids, J[i + 1][0]]


def _crossing_caps(g: Graph, dn: np.ndarray, above: Graph, above_h: dict, clearance: float) -> dict[int, float]:
    """Highest invert allowed at each node of ``g`` so that its pipes pass under the crossing pipes of
    ``above`` with ``clearance`` metres between this crown and that invert (CJJ 61 Q20 / GB 50289)."""
    def lines(gr: Graph) -> np.ndarray:
        x, y, u, v = gr.arrays()
        return shapely.linestrings(np.stack([np.c_[x[u], y[u]], np.c_[x[v], y[v]]], axis=1))

    mine, theirs = lines(g), lines(above)
    if not len(mine) or not len(theirs):
        return {}
    a, b = shapely.STRtree(theirs).query(mine, predicate="crosses")
    _, _, au, av = above.arrays()
    inv = above_h["invert"]
    t = shapely.line_locate_point(theirs[b], shapely.intersection(mine[a], theirs[b]), normalized=True)
    z = inv[au[b]] + t * (inv[av[b]] - inv[au[b]])
    bound = z - clearance - dn[a] / 1000.0
    caps: dict[int, float] = {}
    for e, lim in zip(a.tolist(), bound.tolist(), strict=True):
        for k in (g.u[e], g.v[e]):
            caps[k] = min(caps.get(k, np.inf), lim)
    return caps


def hydraulics(town: Town, g: Graph, net: str, rng: np.random.Generator,
               below: tuple[Graph, dict] | None = None) -> dict[str, np.ndarray]:
    """Diameter per edge and invert per node; with ``below`` = (network, its hydraulics) this
    network is laid under every pipe of that network it crosses (the sewer interceptor passes
    under the storm trunks on their way to the river)."""
    x, y, u, v = g.arrays()
    n = len(x)
    length = g.lengths()
    order = topo_order(n, u, v)
    if len(u) and np.bincount(u).max() > 1:
        raise ValueError("a gravity network node drains two ways")
    out_edge = np.full(n, -1)
    out_edge[u] = np.arange(len(u))
    in_edges: list[list[int]] = [[] for _ in range(n)]
    for e, b in enumerate(v.tolist()):
        in_edges[b].append(e)
    acc = np.zeros(len(u))
    inflow = np.zeros(n)
    for k in order:
        e = out_edge[k]
        if e >= 0:
            acc[e] = inflow[k] + length[e]
            inflow[v[e]] += acc[e]
    steps = DN_STEPS[net]
    dn = np.array([next(d for lim, d in steps if a <= lim) for a in acc])
    dn[np.array(g.e_kind) == "inlet"] = 300
    ground = np.round(town.ground(x, y) + rng.normal(0, 0.01, n), 2)
    extra = rng.uniform(0.0, 0.25, n)
    caps = _crossing_caps(g, dn, *below, clearance=CROSSING_CLEARANCE) if below else {}
    inv = np.zeros(n)
    role = g.role
    for k in order:
        e = out_edge[k]
        d_here = dn[e] if e >= 0 else max(dn[i] for i in in_edges[k])
        cap = min(ground[k] - MIN_COVER - d_here / 1000.0, caps.get(k, np.inf))
        if role[k] == "inlet":
            inv[k] = ground[k] - INLET_DEPTH
            continue
        cands = [inv[u[i]] - MIN_SLOPE[int(dn[i])] * length[i] for i in in_edges[k]]
        inv[k] = min([cap - extra[k]] if not cands else [*cands, cap])
    return {"dn": dn, "invert": np.round(inv, 3), "ground": ground, "length": length, "acc": acc}


def tables(town: Town, g: Graph, net: str, h: dict[str, np.ndarray], rng: np.random.Generator,
           first_no: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CJJ 61 point and line tables with the drainage-census columns, local coordinates."""
    x, y, u, v = g.arrays()
    n = len(x)
    sub = "01" if net == "YS" else "02"
    exp = np.array([f"{net}{k:04d}" for k in range(first_no, first_no + n)], dtype=object)
    role = np.array(g.role)
    ground, inv = h["ground"], h["invert"]
    depth = np.round(ground - inv, 2)
    manhole = np.isin(role, ["junction", "mid"])
    pts = pd.DataFrame({"物探点号": exp, "图上点号": exp, "x": x, "y": y})
    pts["点符号代码"] = None
    pts["特征"] = None
    pts["附属物"] = None
    well = np.where(rng.random(n) < 0.06, "沉泥井", "检修井")
    pts.loc[manhole, "附属物"] = well[manhole]
    pts.loc[manhole, "点符号代码"] = np.where(well[manhole] == "沉泥井", f"52{sub}2211", f"52{sub}2202")
    pts.loc[role == "inlet", ["附属物", "点符号代码"]] = ["雨水箅", "52012204"]
    pts.loc[role == "outfall", ["特征", "点符号代码"]] = ["出水口", "52012105"]
    pts.loc[role == "pump", ["附属物", "点符号代码"]] = ["泵站", "52022221"]
    # 设施类型: the drainage-census facility type (排水防涝设施普查) next to the CJJ 61 附属物
    pts["设施类型"] = pd.Series(role).map({"junction": "检查井", "mid": "检查井", "inlet": "雨水口",
                                         "outfall": "排放口", "pump": "泵站"}).to_numpy()
    pts["地面高程"] = ground
    structure = manhole | np.isin(role, ["inlet", "outfall", "pump"])
    pts["井深"] = np.where(structure, depth, np.nan)
    pts["井底高程"] = np.where(structure, inv, np.nan)          # 井底 / 出口管底高程
    big = np.zeros(n, bool)
    big[u] |= h["dn"] >= 800
    pts["井盖规格"] = np.where(manhole, np.where(big, "Φ800", "Φ700"), np.where(role == "inlet", "750X450", None))
    pts["井盖材质"] = np.where(manhole, np.where(rng.random(n) < 0.8, "球墨铸铁", "复合材料"), None)
    pts["防坠网"] = np.where(manhole, np.where(rng.random(n) < 0.7, "是", "否"), None)
    pts["雨水口型式"] = np.where(role == "inlet", rng.choice(["平箅", "立箅", "联合"], n, p=[0.6, 0.15, 0.25]), None)
    pts["箅数"] = np.where(role == "inlet", rng.choice([1, 2], n, p=[0.7, 0.3]), np.nan)
    outfall = role == "outfall"
    out_dn = np.zeros(n)
    out_dn[v] = np.maximum(out_dn[v], h["dn"])
    pts["排放口类别"] = np.where(outfall, "雨水", None)
    pts["受纳水体"] = np.where(outfall | (role == "pump"), RIVER_NAME, None)
    pts["拍门"] = np.where(outfall, np.where(rng.random(n) < 0.75, "是", "否"), None)
    pts["出口管径"] = np.where(outfall, out_dn, np.nan)
    pts["常水位"] = np.where(outfall, NORMAL_WATER_Z, np.nan)
    pts["洪水位"] = np.where(outfall, FLOOD_WATER_Z, np.nan)
    pump = role == "pump"
    pump_no = np.cumsum(pump)
    pts["泵站名称"] = np.where(pump, [f"滨河{k}号污水提升泵站" for k in pump_no], None)
    pts["设计流量"] = np.where(pump, 0.35, np.nan)
    pts["装机容量"] = np.where(pump, 220.0, np.nan)
    pts["水泵台数"] = np.where(pump, 3, np.nan)
    pts["服务面积"] = np.where(pump, round(town.width * town.height / 1e6 / max(1, pump.sum()), 2), np.nan)
    pts["所在道路"] = g.road
    pts["所属系统"] = f"{town_system(net)}"
    pts["权属单位"] = OWNER
    pts["数据来源"] = "探测"

    dn, length = h["dn"], h["length"]
    years = _road_years(g.e_road, rng, 1996, 2021)
    lines = pd.DataFrame({"起点点号": exp[u], "终点点号": exp[v],
                          "起点埋深": np.round(ground[u] - inv[u], 2), "终点埋深": np.round(ground[v] - inv[v], 2),
                          "起点高程": inv[u], "终点高程": inv[v]})
    lines["管径"] = dn.astype(int).astype(str)
    lines["断面形式"] = "圆形"
    plastic = (dn <= 500) & (rng.random(len(u)) < 0.35)
    lines["材质"] = np.where(plastic, "HDPE", "钢筋混凝土")
    lines["接口形式"] = np.where(plastic, "柔性", "刚性")
    lines["埋设方式"] = "直埋"
    lines["流向"] = "+"
    lines["管段长度"] = np.round(np.hypot(length, inv[u] - inv[v]), 2)
    lines["建设年代"] = years
    lines["权属单位"] = OWNER
    lines["所在道路"] = g.e_road
    lines["数据来源"] = "探测"
    lines["状态"] = "在用"
    lines["点符号代码"] = f"52{sub}1000"
    lines["_u"], lines["_v"] = u, v
    return pts, lines


def town_system(net: str) -> str:
    """排水系统编号 of the demo town (行政区划代码 + 类型)."""
    return "430703-YS-01" if net == "YS" else "430703-WS-01"


def _road_years(roads: list[str], rng: np.random.Generator, lo: int, hi: int) -> np.ndarray:
    """One construction year per road, shared by the pipes along it."""
    names = sorted(set(roads))
    year = dict(zip(names, rng.integers(lo, hi + 1, len(names)).tolist(), strict=True))
    return np.array([year[r] for r in roads])

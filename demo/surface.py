"""Above-ground features of the demo town: buildings, green space, streetlights and their cables.

Blocks get a land use (self-built old houses by the river, residential compounds, commercial,
public, industrial); buildings are laid out on lots per use with 房屋建筑调查 attributes.
Green space follows CJJ/T 85-2017: a 综合公园 by the river, 社区公园 and 游园 in blocks,
防护绿地 along the river and 附属绿地 inside compounds. Streetlights stand at the kerb every
25–35 m (both sides of 主干路, one side of 次干路) with their 路灯 (DL/LD) cable run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely

from demo.graph import KERB, Graph
from demo.town import COUNTY_NAME, RIVER_HALF_WIDTH, Town


@dataclass(frozen=True)
class Use:
    """Lot layout and attribute ranges of one block land use."""

    lot: tuple[float, float]
    fw: tuple[float, float]
    fh: tuple[float, float]
    floors: tuple[list[int], list[float]]
    structure: tuple[list[str], list[float]]
    uses: tuple[list[str], list[float]]
    storey: tuple[float, float]
    years: tuple[int, int]
    self_built: bool
    rotate: float


USES = {
    "old": Use((14, 18), (9, 11), (11, 14), ([2, 3, 4, 5], [.3, .35, .25, .1]),
               (["砌体结构", "底部框架-抗震墙上部砌体结构", "钢筋混凝土结构"], [.6, .25, .15]),
               (["住宅", "批发零售", "餐饮"], [.8, .13, .07]), (3.0, 3.3), (1984, 2012), True, 2.5),
    "res": Use((62, 36), (40, 52), (12, 14), ([6, 11, 18, 26], [.35, .3, .25, .1]),
               (["钢筋混凝土结构"], [1.0]), (["住宅"], [1.0]), (2.9, 3.0), (2000, 2023), False, 0.0),
    "com": Use((52, 42), (30, 44), (20, 32), ([2, 3, 4, 6, 8, 12], [.15, .2, .25, .2, .12, .08]),
               (["钢筋混凝土结构", "钢结构"], [.85, .15]), (["批发零售", "餐饮", "住宿宾馆", "行政办公"], [.45, .2, .2, .15]),
               (4.0, 4.5), (1998, 2023), False, 0.0),
    "pub": Use((82, 52), (50, 65), (16, 20), ([3, 4, 5], [.3, .4, .3]), (["钢筋混凝土结构"], [1.0]),
               (["教育", "医疗卫生", "行政办公", "文化"], [.45, .2, .2, .15]), (3.9, 4.2), (1995, 2022), False, 0.0),
    "ind": Use((92, 72), (50, 75), (30, 50), ([1, 2], [.7, .3]), (["钢结构", "钢筋混凝土结构"], [.7, .3]),
               (["生产加工", "仓储物流"], [.6, .4]), (4.5, 5.0), (2003, 2022), False, 0.0),
}
COMPOUNDS = ["金霞", "桃源", "锦绣", "阳光", "翠湖", "滨江", "书香", "鼎盛", "朗州", "御景", "紫荆", "丹阳", "和谐", "富康"]


def block_uses(town: Town, rng: np.random.Generator) -> dict[tuple[int, int], str]:
    """Land use per block (i, j) in fixed proportions; the riverside block in the middle is the park."""
    kinds, share = ["old", "res", "com", "pub", "ind"], [.12, .44, .32, .07, .05]
    park = ((len(town.xs) - 2) // 2, 0)
    keys = [(i, j) for i, j, _ in town.blocks() if (i, j) != park]
    counts = np.floor(np.array(share) * len(keys)).astype(int)
    counts[1] += len(keys) - counts.sum()
    pool = rng.permutation(np.repeat(kinds, counts))
    out = dict(zip(keys, (str(k) for k in pool), strict=True))
    out[park] = "park"
    return out


def green_spaces(town: Town, uses: dict, rng: np.random.Generator) -> tuple[pd.DataFrame, list]:
    """Green-space polygons (local frame) and the areas kept free of buildings."""
    rows, reserved = [], []
    blocks = {(i, j): poly for i, j, poly in town.blocks()}
    for (i, j), kind in sorted(uses.items()):
        b = blocks[(i, j)]
        x0, y0, x1, y1 = b.bounds
        if kind == "park":
            rows.append(("滨河公园", "G1", "G11", b))
            reserved.append(b)
        elif kind == "res" and (i + j) % 4 == 0:
            g = shapely.box(x1 - 110, y1 - 95, x1, y1)
            rows.append((f"{COMPOUNDS[(i * 7 + j) % len(COMPOUNDS)]}社区公园", "G1", "G12", g))
            reserved.append(g)
        elif kind == "res":
            g = shapely.box(x0 + 8, (y0 + y1) / 2 - 14, x1 - 8, (y0 + y1) / 2 + 14)
            rows.append((f"{COMPOUNDS[(i * 7 + j) % len(COMPOUNDS)]}小区中心绿地", "XG", "RG", g))
            reserved.append(g)
        elif kind == "pub":
            g = shapely.box(x0, y0, x0 + 70, y0 + 45)
            rows.append(("学校附属绿地", "XG", "AG", g))
            reserved.append(g)
        elif kind in ("com", "old") and (i * 3 + j) % 5 == 0:
            g = shapely.box(x0, y0, x0 + 45, y0 + 60)
            rows.append((f"{town.ns_roads[i].name[:2]}游园", "G1", "G14", g))
            reserved.append(g)
    # 防护绿地 between the riverside road and the river bank.
    road = town.ew_roads[0]
    x = np.linspace(0, town.width, 120)
    top = np.full_like(x, road.pos - road.width / 2 - 1.0)
    bank = town.river_y(x) + RIVER_HALF_WIDTH + 1.0
    rows.append(("清水河滨河防护绿带", "G2", "G2", shapely.Polygon(np.r_[np.c_[x, top], np.c_[x[::-1], bank[::-1]]])))
    names = {"G11": "综合公园", "G12": "社区公园", "G14": "游园", "G2": "防护绿地", "RG": "居住用地附属绿地",
             "AG": "公共管理与公共服务设施用地附属绿地"}
    df = pd.DataFrame({"绿地编号": [f"GS{k:04d}" for k in range(1, len(rows) + 1)],
                       "名称": [r[0] for r in rows], "大类": [r[1] for r in rows], "绿地类别": [r[2] for r in rows],
                       "类别名称": [names[r[2]] for r in rows], "geometry": [r[3] for r in rows]})
    df["面积"] = np.round(shapely.area(df["geometry"].to_numpy()), 1)
    df["养护单位"] = "鼎城区园林绿化中心"
    return df, reserved


def _lots(block: shapely.Polygon, use: Use, density: float, rng: np.random.Generator) -> np.ndarray:
    """Rectangular footprints (n, 5, 2) laid on the block's lot grid."""
    x0, y0, x1, y1 = block.bounds
    lw, lh = use.lot[0] / density, use.lot[1] / density
    cx = np.arange(x0 + lw / 2, x1 - lw / 2 + 1e-6, lw)
    cy = np.arange(y0 + lh / 2, y1 - lh / 2 + 1e-6, lh)
    cx, cy = [a.ravel() for a in np.meshgrid(cx, cy)]
    n = len(cx)
    hw = rng.uniform(*use.fw, n) / 2 / density
    hh = rng.uniform(*use.fh, n) / 2 / density
    a = np.radians(rng.uniform(-use.rotate, use.rotate, n))
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]], float)
    lx = corners[None, :, 0] * hw[:, None]
    ly = corners[None, :, 1] * hh[:, None]
    rx = cx[:, None] + lx * np.cos(a)[:, None] - ly * np.sin(a)[:, None]
    ry = cy[:, None] + lx * np.sin(a)[:, None] + ly * np.cos(a)[:, None]
    return np.stack([rx, ry], axis=-1)


def buildings(town: Town, uses: dict, reserved: list, rng: np.random.Generator, target: int | None) -> pd.DataFrame:
    """House-survey (房屋建筑调查) rows with footprints in the local frame."""
    blocks = {(i, j): poly for i, j, poly in town.blocks(setback=8.0)}
    density = 1.0
    if target:
        natural = sum(_capacity(blocks[k], USES[u]) for k, u in uses.items() if u in USES)
        density = max(1.0, math.sqrt(1.08 * target / max(natural, 1)))
    reserved = np.array(reserved, dtype=object)
    parts = []
    for (i, j), kind in sorted(uses.items()):
        if kind not in USES:
            continue
        use = USES[kind]
        rings = _lots(blocks[(i, j)], use, density, rng)
        if not len(rings):
            continue
        polys = shapely.polygons(rings)
        near = reserved[shapely.intersects(reserved, blocks[(i, j)])] if len(reserved) else reserved
        free = shapely.union_all(near) if len(near) else shapely.Polygon()
        keep = shapely.within(polys, blocks[(i, j)]) & ~shapely.intersects(polys, free)
        parts.append(_attributes(town, polys[keep], kind, use, (i, j), rng))
    df = pd.concat(parts, ignore_index=True)
    if target and len(df) > target:
        df = df.iloc[np.sort(rng.choice(len(df), target, replace=False))].reset_index(drop=True)
    df.insert(0, "建筑编号", [f"DC{k:06d}" for k in range(1, len(df) + 1)])
    return df


def _capacity(block: shapely.Polygon, use: Use) -> int:
    x0, y0, x1, y1 = block.bounds
    return int((x1 - x0) // use.lot[0] * ((y1 - y0) // use.lot[1]))


def _attributes(town: Town, polys: np.ndarray, kind: str, use: Use, ij: tuple[int, int],
                rng: np.random.Generator) -> pd.DataFrame:
    n = len(polys)
    floors = rng.choice(use.floors[0], n, p=use.floors[1])
    storey = rng.uniform(*use.storey, n)
    height = np.round(floors * storey + rng.uniform(0.3, 0.8, n), 1)
    height[rng.random(n) < 0.1] = np.nan                       # 建筑高度 often not surveyed
    below = np.where((kind in ("res", "com")) & (floors >= 8), 1, 0)
    area = shapely.area(polys)
    c = shapely.centroid(polys)
    cx, cy = shapely.get_x(c), shapely.get_y(c)
    road, number = _address(town, cx, cy)
    compound = COMPOUNDS[(ij[0] * 7 + ij[1]) % len(COMPOUNDS)]
    if kind == "res":
        names = [f"{compound}小区{k + 1}栋" for k in range(n)]
    elif kind == "pub":
        names = [f"演示镇{['第一中学', '中心小学', '卫生院', '便民服务中心', '文化站'][k % 5]}{k // 5 + 1}号楼" for k in range(n)]
    elif kind == "com":
        names = [f"{compound}商业楼{k + 1}号" if rng.random() < 0.6 else None for k in range(n)]
    else:
        names = [None] * n
    grade = rng.choice(["A", "B", "C", "D"], n, p=[.55, .35, .08, .02] if kind == "old" else [.8, .18, .02, 0])
    grade = np.where(rng.random(n) < (0.2 if kind == "old" else 0.55), None, grade)
    return pd.DataFrame({
        "名称": names, "地址": [f"{COUNTY_NAME}演示镇{r}{k}号" for r, k in zip(road, number, strict=True)],
        "地上层数": floors, "地下层数": below, "建筑高度": height,
        "建筑面积": np.round(area * (floors + below) * rng.uniform(0.95, 1.02, n), 2),
        "结构类型": rng.choice(use.structure[0], n, p=use.structure[1]),
        "建成年份": rng.integers(use.years[0], use.years[1] + 1, n),
        "用途": rng.choice(use.uses[0], n, p=use.uses[1]), "鉴定等级": grade,
        "是否自建房": "是" if use.self_built else "否", "geometry": polys})


def _address(town: Town, x: np.ndarray, y: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Nearest road name and a house number along it (odd on one side, even on the other)."""
    dx = np.abs(x[:, None] - town.xs[None, :])
    dy = np.abs(y[:, None] - town.ys[None, :])
    ix, iy = dx.argmin(1), dy.argmin(1)
    use_ns = dx.min(1) < dy.min(1)
    side_ns = (x > town.xs[ix]).astype(int)
    side_ew = (y > town.ys[iy]).astype(int)
    along = np.where(use_ns, y, x)
    number = (along // 20).astype(int) * 2 + 1 + np.where(use_ns, side_ns, side_ew)
    names = [town.ns_roads[a].name if ns else town.ew_roads[b].name for a, b, ns in zip(ix, iy, use_ns, strict=True)]
    return names, number


def streetlights(town: Town, rng: np.random.Generator) -> tuple[pd.DataFrame, Graph]:
    """Light poles at the kerb every 25–35 m and the 路灯 cable (DL/LD) run joining them."""
    rows, g = [], Graph()
    run_no = 0
    for road in town.ns_roads + town.ew_roads:
        cross = town.ew_roads if road.axis == "ns" else town.ns_roads
        sides = [-1, 1] if road.road_class == "主干路" else [1]
        year = int(rng.integers(2008, 2024))
        for a, b in zip(cross[:-1], cross[1:], strict=True):
            s0, s1 = a.pos + a.width / 2 + 5, b.pos - b.width / 2 - 5
            n = max(1, round((s1 - s0) / 30))
            s = np.linspace(s0, s1, n + 1)
            s[1:-1] += rng.uniform(-0.4, 0.4, n - 1)
            for side in sides:
                off = side * (KERB[road.road_class] + 0.6)
                px, py = (road.pos + off, s) if road.axis == "ns" else (s, road.pos + off)
                px, py = np.broadcast_to(px, s.shape), np.broadcast_to(py, s.shape)
                cab = f"KZX-{run_no // 3 + 1:03d}"
                circuit = f"A{run_no % 3 + 1}"
                led = rng.random(len(s)) < 0.8
                status = rng.choice(["正常", "故障", "拆除"], len(s), p=[.97, .025, .005])
                for k in range(len(s)):
                    rows.append((road.name, road.road_class, px[k], py[k], cab, circuit, bool(led[k]), str(status[k]),
                                 year))
                # cable run: a 路灯控制箱 at the head of every third run, a hand hole (手孔) at each pole
                cx, cy = (road.pos + off - side * 0.3, s) if road.axis == "ns" else (s, road.pos + off - side * 0.3)
                cx, cy = np.broadcast_to(cx, s.shape), np.broadcast_to(cy, s.shape)
                nodes = [g.node(cx[k], cy[k], "handhole", road) for k in range(len(s))]
                if run_no % 3 == 0:
                    hx, hy = (cx[0], cy[0] - 3.0) if road.axis == "ns" else (cx[0] - 3.0, cy[0])
                    nodes.insert(0, g.node(hx, hy, "cabinet", road))
                g.path(nodes, road)
                run_no += 1
    return _light_table(rows, rng), g


def _light_table(rows: list, rng: np.random.Generator) -> pd.DataFrame:
    n = len(rows)
    df = pd.DataFrame(rows, columns=["道路名称", "道路等级", "x", "y", "控制箱编号", "回路号", "led", "状态", "year"])
    main = (df["道路等级"] == "主干路").to_numpy()
    led = df["led"].to_numpy()
    smart = main & (rng.random(n) < 0.06)
    df.insert(0, "灯杆编号", [f"LG{k:05d}" for k in range(1, n + 1)])
    df["灯杆类型"] = np.where(smart, "智慧灯杆", np.where(main & (rng.random(n) < 0.3), "双臂", "单臂"))
    df["杆高"] = np.where(main, 12.0, 10.0)
    df["臂长"] = np.where(main, 2.0, 1.5)
    df["灯头数"] = np.where(df["灯杆类型"] == "双臂", 2, 1)
    df["光源类型"] = np.where(led, "LED", "高压钠灯")
    df["功率"] = np.where(led, np.where(main, 150, 100), np.where(main, 250, 150))
    df["单灯控制器"] = [f"SLC{k:08X}" if is_led else None for k, is_led in
                       zip(rng.integers(0x10000000, 0xFFFFFFFF, n), led, strict=True)]
    day = rng.integers(1, 28, n)
    month = rng.integers(1, 13, n)
    df["安装日期"] = [f"{y}-{m:02d}-{d:02d}" for y, m, d in zip(df["year"], month, day, strict=True)]
    df["权属单位"] = "鼎城区城市照明管理所"
    insp_m = rng.integers(1, 11, n)
    df["最近巡检"] = [f"2026-{m:02d}-{d:02d}" for m, d in zip(insp_m, day, strict=True)]
    return df.drop(columns=["led", "year"])


def cable_tables(town: Town, g: Graph, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CJJ 61 point and line tables of the streetlight cables (电力 DL, 小类 路灯 LD)."""
    x, y, u, v = g.arrays()
    n = len(x)
    role = np.array(g.role)
    exp = np.array([f"LD{k:04d}" for k in range(1, n + 1)], dtype=object)
    ground = np.round(town.ground(x, y) + rng.normal(0, 0.01, n), 2)
    cab = role == "cabinet"
    pts = pd.DataFrame({"物探点号": exp, "图上点号": exp, "x": x, "y": y, "地面高程": ground,
                        "点符号代码": np.where(cab, "55022206", "55022202"), "特征": None,
                        "附属物": np.where(cab, "路灯控制箱", "手孔"), "井深": np.where(cab, np.nan, 0.8),
                        "所在道路": g.road, "权属单位": "鼎城区城市照明管理所"})
    depth = np.round(0.7 + rng.uniform(0, 0.03, n), 2)
    lines = pd.DataFrame({"起点点号": exp[u], "终点点号": exp[v], "起点埋深": depth[u], "终点埋深": depth[v],
                          "起点高程": np.round(ground[u] - depth[u], 3), "终点高程": np.round(ground[v] - depth[v], 3),
                          "管径": "100", "材质": "铜", "埋设方式": "管埋", "电压": 0.38, "电缆条数": 1,
                          "建设年代": 2015, "权属单位": "鼎城区城市照明管理所", "所在道路": g.e_road, "状态": "在用",
                          "点符号代码": "55021000"})
    lines["_u"], lines["_v"] = u, v
    return pts, lines

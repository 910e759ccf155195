"""The health-check report of a run: an Excel workbook and a printable HTML page.

Workbook (``.xlsx``): a 说明 sheet (run, scope, data versions, inputs, legend), one sheet per admin
level with indicator rows and area columns (failing cells filled red with the target in a
comment, passing green, not computed grey with the reason), and a 未计算 sheet listing every value
not computed and why. HTML: the same tables and, per failing indicator, a map of the areas of the
finest level where it fails, coloured pass / fail, drawn as inline SVG (no network needed, prints
as it shows). Both read only what the run stored.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import jinja2
import psycopg2.extensions
import shapely

from cim.errors import InvalidInput
from cimplus.healthcheck import history

LEVELS = {"county": ("县（区）", "County"), "street": ("街道（乡镇）", "Street / town"),
          "community": ("社区（村）", "Community")}
FAIL_FILL, PASS_FILL, NONE_FILL = "FFC7CE", "C6EFCE", "EDEDED"
FAIL_SVG, PASS_SVG, NONE_SVG = "#e34a33", "#74c476", "#d9d9d9"
_TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                                autoescape=jinja2.select_autoescape(["html", "j2"]))
SUFFIXES = (".xlsx", ".html")


def _threshold_text(d: dict[str, Any], t: float | None = None, op: str | None = None) -> str:
    th = d.get("threshold")
    if not th:
        return "—"
    value = th["value"] if t is None else t
    return f"{op or th['op']} {value:g}"


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit in ("栋", "个", "座"):
        return f"{value:.0f}"
    return f"{value:.2f}"


def gather(cur: psycopg2.extensions.cursor, run_id: int) -> dict[str, Any]:
    """Everything a report shows, read from the run."""
    run = history.get_run(cur, run_id)
    if run["state"] != "done":
        raise InvalidInput(f"体检运行 {run_id} 未完成（{run['state']}），无法出报告",
                           f"health-check run {run_id} is {run['state']}: no report")
    values = history.values(cur, run_id)
    catalogue = run["catalogue"]
    order = list(catalogue)
    levels = [lv for lv in ("county", "street", "community") if lv in run["levels"]]
    by_level: dict[str, dict[str, Any]] = {}
    for level in levels:
        rows = [v for v in values if v["area_level"] == level]
        area_list = sorted({(v["area_code"], v["area_name"]) for v in rows})
        cells = {(v["indicator"], v["area_code"]): v for v in rows}
        by_level[level] = {"areas": area_list, "cells": cells,
                           "indicators": [i for i in order if any(k[0] == i for k in cells)]}
    return {"run": run, "catalogue": catalogue, "levels": levels, "by_level": by_level, "values": values}


def write(conn: psycopg2.extensions.connection, run_id: int, out: Path) -> Path:
    """Write the report of a run to ``out`` (``.xlsx`` or ``.html`` by suffix)."""
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidInput(f"报告文件须为 .xlsx 或 .html：{out.name}", f"the report must be .xlsx or .html: {out.name}")
    try:
        with conn.cursor() as cur:
            data = gather(cur, run_id)
            if suffix == ".html":
                data["maps"] = _maps(cur, data)
    finally:
        conn.rollback()
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".xlsx":
        _xlsx(data, out)
    else:
        out.write_text(html(data), encoding="utf-8")
    return out


def render(conn: psycopg2.extensions.connection, run_id: int, fmt: str) -> bytes:
    """The report as bytes (``xlsx`` or ``html``), for HTTP answers."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cim-hc-report-") as tmp:
        path = write(conn, run_id, Path(tmp) / f"report.{fmt}")
        return path.read_bytes()


# --- workbook -------------------------------------------------------------------------------------

def _xlsx(data: dict[str, Any], out: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.worksheet import Worksheet

    run, cat = data["run"], data["catalogue"]
    wb = Workbook()
    info = wb.active
    assert isinstance(info, Worksheet)  # a new workbook's one sheet
    info.title = "说明"
    bold = Font(bold=True)
    lines = [("城市体检报告 / Urban health-check report", ""),
             ("运行编号 / run", run["id"]), ("体检年份 / year", run["year"]),
             ("范围（县级代码）/ counties", ", ".join(run["counties"])), ("行政区级别 / levels", ", ".join(run["levels"])),
             ("开始 / started", run["started_at"]), ("完成 / finished", run["finished_at"]),
             ("用时 / elapsed (s)", run["elapsed_s"]), ("指标定义摘要 / catalogue sha256", run["catalogue_sha"]),
             ("长度面积计算坐标系 / metric CRS", f"EPSG:{run['metric_srid']}"),
             ("数据版本 / data versions", ", ".join(f"{k}={v}" for k, v in sorted((run["data_versions"] or {}).items()))),
             ("输入数据 / inputs", _inputs_text(run["inputs"] or {})),
             ("", ""),
             ("图例 / legend", ""), ("红色：未达标 / red: below target", ""), ("绿色：达标 / green: meets target", ""),
             ("灰色：未计算（批注说明原因）/ grey: not computed (the comment says why)", "")]
    for r, (k, v) in enumerate(lines, start=1):
        info.cell(r, 1, k).font = bold if r == 1 or k.startswith("图例") else Font()
        info.cell(r, 2, v if not isinstance(v, (list, dict)) else str(v))
    info.cell(15, 1).fill = PatternFill("solid", fgColor=FAIL_FILL)
    info.cell(16, 1).fill = PatternFill("solid", fgColor=PASS_FILL)
    info.cell(17, 1).fill = PatternFill("solid", fgColor=NONE_FILL)
    info.column_dimensions["A"].width = 48
    info.column_dimensions["B"].width = 80
    fills = {False: PatternFill("solid", fgColor=FAIL_FILL), True: PatternFill("solid", fgColor=PASS_FILL),
             "none": PatternFill("solid", fgColor=NONE_FILL)}
    head = ["指标编号 id", "指标 indicator", "体检层级 level", "维度 dimension", "单位 unit", "方向 direction",
            "阈值 target", "阈值来源 source", "未达标区域数 failing"]
    for level in data["levels"]:
        block = data["by_level"][level]
        ws = wb.create_sheet(f"{LEVELS[level][0]}")
        ws.cell(1, 1, f"{LEVELS[level][0]} / {LEVELS[level][1]} — {run['year']} 年城市体检（运行 {run['id']}）").font = bold
        for c, h in enumerate(head, start=1):
            ws.cell(3, c, h).font = bold
            ws.cell(4, c, "")
        for j, (code, name) in enumerate(block["areas"]):
            col = len(head) + 1 + j
            ws.cell(3, col, name).font = bold
            ws.cell(4, col, code)
            ws.column_dimensions[get_column_letter(col)].width = 14
        for i, ind_id in enumerate(block["indicators"]):
            d = cat[ind_id]
            r = 5 + i
            cells = [block["cells"].get((ind_id, code)) for code, _ in block["areas"]]
            failing = sum(1 for v in cells if v and v["pass"] is False)
            th = next((v for v in cells if v and v["threshold"] is not None), None)
            meta = [ind_id, d["name_zh"] + " / " + d["name_en"], d["level"], d["dimension"], d["unit"],
                    "越高越好 higher" if d["direction"] == "higher" else "越低越好 lower",
                    _threshold_text(d, th["threshold"] if th else None, th["op"] if th else None),
                    (d.get("threshold") or {}).get("source") or d.get("threshold_note") or "", failing]
            for c, m in enumerate(meta, start=1):
                ws.cell(r, c, m)
            for j, v in enumerate(cells):
                cell = ws.cell(r, len(head) + 1 + j)
                if v is None:
                    continue
                if v["state"] != "computed":
                    cell.value = "未计算"
                    cell.fill = fills["none"]
                    cell.comment = Comment(f"{v['reason_zh']} / {v['reason_en']}", "CIM")
                    continue
                cell.value = round(v["value"], 4)
                cell.number_format = "0" if d["unit"] in ("栋", "个") else "0.00"
                if v["pass"] is not None:
                    cell.fill = fills[v["pass"]]
                if v["pass"] is False:
                    cell.font = Font(color="9C0006", bold=True)
                    cell.comment = Comment(f"未达标：目标 {v['op']} {v['threshold']:g} {d['unit']} / below target "
                                           f"{v['op']} {v['threshold']:g}", "CIM")
        widths = [26, 40, 10, 10, 8, 12, 10, 36, 10]
        for c, w in enumerate(widths, start=1):
            ws.column_dimensions[get_column_letter(c)].width = w
        ws.freeze_panes = ws.cell(5, len(head) + 1)
        for row in ws.iter_rows(min_row=3, max_row=4):
            for cell in row:
                cell.alignment = Alignment(wrap_text=True, vertical="top")
    nc = wb.create_sheet("未计算")
    for c, h in enumerate(["指标编号 id", "指标 indicator", "区域代码 area", "区域 name", "级别 level",
                           "原因 reason", "reason"], start=1):
        nc.cell(1, c, h).font = bold
    r = 2
    for v in data["values"]:
        if v["state"] == "computed":
            continue
        for c, x in enumerate([v["indicator"], cat[v["indicator"]]["name_zh"], v["area_code"], v["area_name"],
                               v["area_level"], v["reason_zh"], v["reason_en"]], start=1):
            nc.cell(r, c, x)
        r += 1
    wb.save(out)


def _inputs_text(inputs: dict[str, Any]) -> str:
    pop, bu, led = inputs.get("population") or {}, inputs.get("builtup") or {}, inputs.get("hazard_ledger") or {}
    return (f"常住人口 population: uploads {pop.get('input_ids', [])} years {pop.get('years', [])}; "
            f"建成区 built-up: uploads {bu.get('input_ids', [])} years {bu.get('years', [])}; "
            f"隐患台账 hazard ledger: {'used' if led.get('used') else 'not used'} ({led.get('note', '')})")


# --- HTML -----------------------------------------------------------------------------------------

def _maps(cur: psycopg2.extensions.cursor, data: dict[str, Any]) -> list[dict[str, Any]]:
    """One map per failing indicator: the areas of the finest level where it fails."""
    run = data["run"]
    maps = []
    shapes: dict[str, list[tuple[str, str, Any]]] = {}
    for ind_id in data["catalogue"]:
        for level in reversed(data["levels"]):
            cells = {k[1]: v for k, v in data["by_level"][level]["cells"].items() if k[0] == ind_id}
            failing = [v for v in cells.values() if v["pass"] is False]
            if not failing:
                continue
            if level not in shapes:
                shapes[level] = _shapes(cur, [c for c, _ in data["by_level"][level]["areas"]], run["metric_srid"])
            d = data["catalogue"][ind_id]
            maps.append({"indicator": ind_id, "name_zh": d["name_zh"], "name_en": d["name_en"], "level": level,
                         "level_zh": LEVELS[level][0], "unit": d["unit"],
                         "target": f"{failing[0]['op']} {failing[0]['threshold']:g}",
                         "failing": sorted((v["area_name"], v["area_code"], _fmt(v["value"], d["unit"])) for v in failing),
                         "svg": _svg(shapes[level], cells)})
            break
    return maps


def _shapes(cur, codes: list[str], srid: int) -> list[tuple[str, str, Any]]:
    cur.execute("SELECT code, name, ST_AsBinary(ST_SimplifyPreserveTopology(ST_Transform(geom, %s), 2.0)) "
                "FROM cim.admin_area WHERE is_current AND code = ANY(%s) ORDER BY code", (srid, codes))
    return [(code, name, shapely.from_wkb(bytes(wkb))) for code, name, wkb in cur.fetchall()]


def _svg(shapes: list[tuple[str, str, Any]], cells: dict[str, dict[str, Any]], width: float = 640.0) -> str:
    if not shapes:
        return ""
    x0, y0, x1, y1 = shapely.total_bounds([g for _, _, g in shapes])
    span = max(x1 - x0, y1 - y0, 1e-9)
    scale = width / span
    height = (y1 - y0) * scale

    def ring(coords) -> str:
        pts = [f"{(x - x0) * scale:.1f},{(y1 - y) * scale:.1f}" for x, y in coords]
        return "M" + " L".join(pts) + " Z"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="-4 -4 {width + 8:.0f} {height + 8:.0f}" '
             f'width="{width + 8:.0f}" height="{height + 8:.0f}" role="img">']
    labels = []
    for code, name, geom in shapes:
        v = cells.get(code)
        fill = NONE_SVG if v is None or v["pass"] is None else (PASS_SVG if v["pass"] else FAIL_SVG)
        d = " ".join(ring(r.coords) for poly in shapely.get_parts(geom)
                     for r in [poly.exterior, *poly.interiors])
        state = "none" if v is None or v["pass"] is None else ("pass" if v["pass"] else "fail")
        parts.append(f'<path d="{d}" fill="{fill}" stroke="#444" stroke-width="0.8" fill-rule="evenodd" '
                     f'data-code="{code}" data-state="{state}"><title>{jinja2.filters.escape(name)} {code}</title></path>')
        c = geom.point_on_surface()
        labels.append(f'<text x="{(c.x - x0) * scale:.1f}" y="{(y1 - c.y) * scale:.1f}" font-size="10" '
                      f'text-anchor="middle">{jinja2.filters.escape(name)}</text>')
    return "".join(parts + labels) + "</svg>"


def html(data: dict[str, Any]) -> str:
    """The printable page."""
    run, cat = data["run"], data["catalogue"]
    levels = []
    for level in data["levels"]:
        block = data["by_level"][level]
        rows = []
        for ind_id in block["indicators"]:
            d = cat[ind_id]
            cells = []
            for code, _ in block["areas"]:
                v = block["cells"].get((ind_id, code))
                if v is None:
                    cells.append({"text": "", "state": "none", "title": ""})
                elif v["state"] != "computed":
                    cells.append({"text": "未计算", "state": "nc", "title": f"{v['reason_zh']} / {v['reason_en']}"})
                else:
                    state = "none" if v["pass"] is None else ("pass" if v["pass"] else "fail")
                    cells.append({"text": _fmt(v["value"], d["unit"]), "state": state,
                                  "title": "" if v["threshold"] is None else f"目标 {v['op']} {v['threshold']:g}"})
            rows.append({"id": ind_id, "name_zh": d["name_zh"], "name_en": d["name_en"], "unit": d["unit"],
                         "level": d["level"], "target": _threshold_text(d), "cells": cells,
                         "source": (d.get("threshold") or {}).get("source") or d.get("threshold_note") or ""})
        levels.append({"level": level, "zh": LEVELS[level][0], "en": LEVELS[level][1], "areas": block["areas"],
                       "rows": rows})
    return _TEMPLATES.get_template("report.html.j2").render(
        run=run, levels=levels, maps=data.get("maps", []), inputs=_inputs_text(run["inputs"] or {}),
        generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        versions=", ".join(f"{k}={v}" for k, v in sorted((run["data_versions"] or {}).items())))

"""The ledger as documents: an xlsx workbook in 台账 layout and a printable HTML page.

Workbook: a summary sheet (汇总: counts by facility type × status with 逾期, by risk level, by
area) followed by one sheet per facility type present, each a table with Chinese headers
(:data:`COLUMNS`), one row per entry. The HTML page holds the same tables for printing (A4
landscape, one section per facility type, repeated table headers).
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import jinja2
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font, PatternFill
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from cimplus.hazards import config
from cimplus.hazards.model import Hazard
from cimplus.hazards.query import Filters, is_overdue, stats
from cimplus.hazards.workflow import today

TEMPLATES = Path(__file__).resolve().parent / "templates"

#: (header, key) of the ledger table
COLUMNS: list[tuple[str, str]] = [
    ("序号", "seq"), ("隐患编号", "number"), ("来源", "source_zh"), ("规则", "rule"), ("设施类型", "facility_type_zh"),
    ("设施编号", "facility_codes"), ("隐患名称", "title"), ("隐患描述", "description"), ("位置", "location"),
    ("县（市、区）", "county"), ("街道（乡镇）", "street"), ("社区（村）", "community"), ("隐患等级", "hazard_class_zh"),
    ("风险等级", "risk_level_zh"), ("风险颜色", "risk_colour_zh"), ("实测值", "measured"), ("要求值", "required"),
    ("依据条款", "clause"), ("发现时间", "found_at"), ("发现人", "found_by"), ("责任单位", "responsible_unit"),
    ("责任人", "responsible_person"), ("联系方式", "contact"), ("整改措施", "measures"), ("临时管控措施", "interim_controls"),
    ("整改资金（元）", "budget"), ("整改时限", "deadline"), ("复查人", "reviewer"), ("挂牌督办", "supervision_zh"),
    ("状态", "status_zh"), ("是否逾期", "overdue"), ("条件已消除", "condition_cleared"), ("验收意见", "verify_result"),
    ("验收人", "verified_by"), ("验收时间", "verified_at"), ("销号人", "closed_by"), ("销号时间", "closed_at"),
    ("关联原条目", "previous_number"),
]
_RISK_FILL = {1: "F4CCCC", 2: "FCE5CD", 3: "FFF2CC", 4: "CFE2F3"}


def _fmt(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, bool):
        return "是" if v else "否"
    if isinstance(v, (dict, list)):
        return str(v)
    return v


def rows(session: Session, filters: Filters, timezone: str) -> list[dict[str, Any]]:
    """Every matching entry as a flat row of the ledger table (facility type, then number)."""
    from cimplus.hazards.query import labels

    entries = session.execute(select(Hazard).where(*filters.where(timezone))
                              .order_by(Hazard.facility_type, Hazard.number)).scalars().all()
    codes = sorted({c for h in entries for c in (h.county_code, h.street_code, h.community_code) if c})
    names: dict[str, str] = dict(session.execute(text(
        "SELECT DISTINCT ON (code) code, name FROM cim.admin_area WHERE code = ANY(:codes) AND is_current "
        "ORDER BY code, id DESC"), {"codes": codes}).all()) if codes else {}
    prev_ids = sorted({h.previous_id for h in entries if h.previous_id})
    prev = dict(session.execute(select(Hazard.id, Hazard.number).where(Hazard.id.in_(prev_ids))).all()) if prev_ids else {}
    rules = config.rules().rules
    out = []
    for h in entries:
        base = {c.key: getattr(h, c.key) for c in Hazard.__table__.columns if c.key not in ("geom", "shape")}
        row = {**base, **labels(base)}
        ev = h.evidence or {}
        unit = ev.get("unit") or ""
        rule = rules.get(h.rule_id or "")
        row.update(
            rule=f"{h.rule_id} {rule.name_zh}" if rule else (h.rule_id or ""),
            facility_codes="、".join(str(r.get("code") or "") for r in (h.facility_refs or [])),
            county=names.get(h.county_code, h.county_code), street=names.get(h.street_code or "", h.street_code),
            community=names.get(h.community_code or "", h.community_code),
            measured=f"{_fmt(ev['measured'])} {unit}".strip() if ev.get("measured") is not None else None,
            required=f"{_fmt(ev['required'])} {unit}".strip() if ev.get("required") is not None else None,
            clause=ev.get("clause"), overdue=is_overdue(h, timezone), previous_number=prev.get(h.previous_id) if h.previous_id is not None else None)
        out.append(row)
    return out


def _sheet_name(name: str, used: set[str]) -> str:
    clean = "".join("_" if ch in '[]:*?/\\' else ch for ch in name)[:28] or "sheet"
    out, n = clean, 2
    while out in used:
        out, n = f"{clean}{n}", n + 1
    used.add(out)
    return out


def xlsx(session: Session, filters: Filters, timezone: str) -> bytes:
    """The ledger workbook (see the module docstring)."""
    led = config.ledger()
    data = rows(session, filters, timezone)
    summary = stats(session, filters, timezone=timezone)
    wb = Workbook(write_only=True)
    bold = Font(bold=True)
    head_fill = PatternFill("solid", fgColor="DDEBF7")
    wrap = Alignment(wrap_text=True, vertical="top")
    used: set[str] = set()

    def cell(ws, value, *, font=None, fill=None, align=None):
        c = WriteOnlyCell(ws, value=value)
        if font:
            c.font = font
        if fill:
            c.fill = fill
        if align:
            c.alignment = align
        return c

    ws = wb.create_sheet(_sheet_name("汇总", used))
    ws.append([cell(ws, "设施危险源及风险隐患管理台账（汇总）", font=Font(bold=True, size=14))])
    ws.append([f"导出日期：{today(timezone).isoformat()}", f"条目数：{summary['total']}", f"逾期：{summary['overdue']}",
               "筛选：" + ("；".join(f"{k}={v}" for k, v in summary["filters"].items()) or "全部")])
    ws.append([])
    statuses = list(led.statuses)
    ws.append([cell(ws, h, font=bold, fill=head_fill) for h in
               ["设施类型", *(led.statuses[s].zh for s in statuses), "合计", "其中逾期"]])
    by_type: dict[str, dict[str, int]] = {}
    od_type: dict[str, int] = {}
    for m in summary["matrix"]:
        t = by_type.setdefault(m["facility_type"], {})
        t[m["status"]] = t.get(m["status"], 0) + m["count"]
        od_type[m["facility_type"]] = od_type.get(m["facility_type"], 0) + m["overdue"]
    for ftype, counts in sorted(by_type.items()):
        label = led.facility_types[ftype].zh if ftype in led.facility_types else ftype
        ws.append([label, *(counts.get(s, 0) for s in statuses), sum(counts.values()), od_type.get(ftype, 0)])
    ws.append([cell(ws, "合计", font=bold), *(sum(c.get(s, 0) for c in by_type.values()) for s in statuses),
               summary["total"], summary["overdue"]])
    ws.append([])
    ws.append([cell(ws, h, font=bold, fill=head_fill) for h in ["风险等级", "颜色", "条目数"]])
    for lv, v in summary["by_risk_level"].items():
        ws.append([v["zh"], led.risk_levels[int(lv)].colour_zh, v["count"]])
    ws.append([])
    ws.append([cell(ws, h, font=bold, fill=head_fill) for h in ["行政区代码", "名称", "条目数", "其中逾期"]])
    for a in summary["by_area"]:
        ws.append([a["code"], a["name"], a["total"], a["overdue"]])

    groups: dict[str, list[dict[str, Any]]] = {}
    for r in data:
        groups.setdefault(r["facility_type"], []).append(r)
    for ftype, items in groups.items():
        label = led.facility_types[ftype].zh if ftype in led.facility_types else ftype
        ws = wb.create_sheet(_sheet_name(label, used))
        ws.column_dimensions["B"].width = 20
        ws.column_dimensions["G"].width = 48
        ws.freeze_panes = "C2"
        ws.append([cell(ws, h, font=bold, fill=head_fill, align=wrap) for h, _ in COLUMNS])
        for i, r in enumerate(items, 1):
            r = {**r, "seq": i}
            fill = PatternFill("solid", fgColor=_RISK_FILL.get(r.get("risk_level") or 0, "FFFFFF"))
            ws.append([cell(ws, _fmt(r.get(k)), fill=fill if k in ("risk_level_zh", "risk_colour_zh") else None)
                       for _, k in COLUMNS])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def html(session: Session, filters: Filters, timezone: str) -> str:
    """The printable ledger page (see the module docstring)."""
    led = config.ledger()
    data = rows(session, filters, timezone)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in data:
        groups.setdefault(r["facility_type"], []).append({k: _fmt(v) for k, v in r.items()})
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    return env.get_template("ledger.html.j2").render(
        title="设施危险源及风险隐患管理台账", as_of=today(timezone).isoformat(),
        summary=stats(session, filters, timezone=timezone), statuses=led.statuses,
        groups=[(led.facility_types[k].zh if k in led.facility_types else k, v) for k, v in groups.items()],
        columns=[(h, k) for h, k in COLUMNS if k not in ("description", "interim_controls", "contact", "verified_at",
                                                          "closed_at", "condition_cleared")],
        risk_hex={k: v.hex for k, v in led.risk_levels.items()})

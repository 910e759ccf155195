"""Validation report as JSON, a standalone Chinese HTML page and an XLSX workbook.

All three carry the same content (:func:`report_dict`): a summary (counts per rule, per layer
and per severity; rows per target table; the reader's notes on encodings, CRSs and profiles)
and the findings (rule id, severity, layer, row, point number, field, value, message in
Chinese and English, location).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from ingest.model import Report
from ingest.validation.core import load_rules

TEMPLATES = Path(__file__).resolve().parent / "templates"
SEVERITY_ZH = {"error": "错误", "warning": "警告", "info": "提示"}
COLUMNS = [("rule_id", "规则", "Rule"), ("rule_name_zh", "规则名称", "Rule name"), ("severity_zh", "级别", "Severity"),
           ("source_layer", "图层", "Layer"), ("row", "行号", "Row"), ("key", "点号/编号", "Point no./id"),
           ("field", "字段", "Field"), ("value", "值", "Value"), ("message_zh", "说明", "Message"),
           ("message_en", "Message (EN)", "Message (EN)"), ("x", "经度", "Lon"), ("y", "纬度", "Lat")]


def report_dict(report: Report) -> dict[str, Any]:
    """JSON-ready report: ``summary`` and ``findings``."""
    rules = load_rules()
    d = report.delivery
    by_rule = Counter(f.rule_id for f in report.findings)
    by_layer = Counter(f.source_layer for f in report.findings)
    by_sev = Counter(f.severity.value for f in report.findings)
    rule_rows = [{"rule_id": rid, "name_zh": rules[rid].name_zh if rid in rules else rid,
                  "name_en": rules[rid].name_en if rid in rules else rid,
                  "severity": next(f.severity.value for f in report.findings if f.rule_id == rid), "count": n}
                 for rid, n in sorted(by_rule.items())]
    layers = [{"source_layer": b.source_layer, "file": b.file, "target": b.target, "profile": b.profile_id,
               "rows": len(b), "source_crs": b.source_crs, "encoding": b.encoding, "network": b.network,
               "subtype": b.subtype, "findings": by_layer.get(b.source_layer, 0)} for b in d.batches]
    summary = {
        "file_name": d.file_name, "sha256": d.sha256, "size_bytes": d.size_bytes, "county_code": d.county_code,
        "accepted": not report.has_errors, "rows": d.counts(),
        "findings_total": len(report.findings),
        "by_severity": {s: by_sev.get(s, 0) for s in ("error", "warning", "info")},
        "by_rule": rule_rows, "by_layer": dict(sorted(by_layer.items())), "layers": layers,
        "notes": [{"source_layer": n.source_layer, "topic": n.topic, "message_zh": n.message_zh,
                   "message_en": n.message_en} for n in d.notes],
    }
    return {"summary": summary, "findings": [f.to_dict() for f in report.findings]}


def write_json(report: Report, path: Path | str) -> Path:
    """Write the report as UTF-8 JSON."""
    path = Path(path)
    path.write_text(json.dumps(report_dict(report), ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    return path


def _rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    names = {r["rule_id"]: r["name_zh"] for r in data["summary"]["by_rule"]}
    return [{**f, "rule_name_zh": names.get(f["rule_id"], f["rule_id"]),
             "severity_zh": SEVERITY_ZH.get(f["severity"], f["severity"])} for f in data["findings"]]


def write_html(report: Report, path: Path | str, *, max_rows: int = 20000) -> Path:
    """Write a standalone HTML page (inline CSS, no external resources) in Chinese."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape  # report writers load on use

    path = Path(path)
    data = report_dict(report)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    rows = _rows(data)
    html = env.get_template("report.html.j2").render(
        s=data["summary"], rows=rows[:max_rows], truncated=max(len(rows) - max_rows, 0), columns=COLUMNS[:10],
        severity_zh=SEVERITY_ZH)
    path.write_text(html, encoding="utf-8")
    return path


def write_xlsx(report: Report, path: Path | str) -> Path:
    """Write a workbook: a summary sheet, then one sheet per rule with its findings."""
    from openpyxl import Workbook  # report writers load on use
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font, PatternFill

    path = Path(path)
    data = report_dict(report)
    s = data["summary"]
    wb = Workbook(write_only=True)
    bold = Font(bold=True)
    ws = wb.create_sheet("汇总")
    ws.append(["质检报告 / Validation report"])
    for label, value in (("文件 / File", s["file_name"]), ("SHA-256", s["sha256"]), ("县 / County", s["county_code"]),
                         ("结论 / Result", "通过 accepted" if s["accepted"] else "退回 rejected"),
                         ("错误 / Errors", s["by_severity"]["error"]), ("警告 / Warnings", s["by_severity"]["warning"])):
        ws.append([label, value])
    ws.append([])
    ws.append(["规则 Rule", "规则名称", "Rule name", "级别 Severity", "数量 Count"])
    for r in s["by_rule"]:
        ws.append([r["rule_id"], r["name_zh"], r["name_en"], SEVERITY_ZH[r["severity"]], r["count"]])
    ws.append([])
    ws.append(["图层 Layer", "文件 File", "目标表 Target", "规范 Profile", "行数 Rows", "坐标系 CRS", "编码 Encoding",
               "问题数 Findings"])
    for lay in s["layers"]:
        ws.append([lay["source_layer"], lay["file"], lay["target"], lay["profile"], lay["rows"], lay["source_crs"],
                   lay["encoding"], lay["findings"]])
    ws.append([])
    ws.append(["说明 Notes"])
    for n in s["notes"]:
        ws.append([n["source_layer"], n["topic"], n["message_zh"], n["message_en"]])
    rows = _rows(data)
    fill = PatternFill("solid", fgColor="DDDDDD")
    for rule in s["by_rule"]:
        sheet = wb.create_sheet(rule["rule_id"][:31])
        header = []
        for _key, zh, en in COLUMNS:
            c = WriteOnlyCell(sheet, value=f"{zh} {en}" if zh != en else zh)
            c.font, c.fill = bold, fill
            header.append(c)
        sheet.append(header)
        for r in rows:
            if r["rule_id"] == rule["rule_id"]:
                sheet.append([_cell(r.get(k)) for k, _zh, _en in COLUMNS])
    wb.save(path)
    return path


def _cell(v: Any) -> Any:
    if v is None or isinstance(v, (int, float, str, bool)):
        return v
    return str(v)

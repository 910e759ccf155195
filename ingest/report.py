"""Validation report as JSON, CSV, a standalone Chinese HTML page and an XLSX workbook.

All carry the same summary (:func:`report_dict`): counts per rule, per layer and per severity;
rows per target table; the reader's notes on encodings, CRSs and profiles; per layer the
mapping used (each delivered field, its target column, how it was decided, confidence, sample
values) and the value mappings given or proposed. Findings are grouped (:func:`groups`: rule ×
layer × field × value → count, first rows, extent), biggest groups first, errors before
warnings: the HTML page and the workbook lead with what to fix first and stay small whatever
the number of findings. The full list of findings is in the JSON and the CSV (the workbook's
per-rule sheets stop at Excel's row limit). :func:`write_groups` writes the summary and the
groups without the findings as JSON Lines, for readers that page through the groups
(:func:`read_groups`) without loading every finding.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cim.schema import feature_table
from ingest.model import Finding, Report
from ingest.validation.core import load_rules

TEMPLATES = Path(__file__).resolve().parent / "templates"
SEVERITY_ZH = {"error": "错误", "warning": "警告", "info": "提示"}
COLUMNS = [("rule_id", "规则", "Rule"), ("rule_name_zh", "规则名称", "Rule name"), ("severity_zh", "级别", "Severity"),
           ("source_layer", "图层", "Layer"), ("row", "行号", "Row"), ("key", "点号/编号", "Point no./id"),
           ("field", "字段", "Field"), ("value", "值", "Value"), ("message_zh", "说明", "Message"),
           ("message_en", "Message (EN)", "Message (EN)"), ("x", "经度", "Lon"), ("y", "纬度", "Lat")]
EXCEL_MAX_ROWS = 1_048_576          # rows of a worksheet, header included
FIRST_ROWS = 5                      # rows of the delivery named per group
HTML_GROUPS = 500                   # groups listed on the HTML page (the rest: JSON, CSV, XLSX)
HTML_DETAIL = 1000                  # findings listed on the HTML page, taken from the biggest groups
_SEV_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass
class Group:
    """Findings sharing rule, layer, field and value."""

    rule_id: str
    severity: str
    source_layer: str
    field: str | None
    value: str | None
    count: int = 0
    rows: list[int] = dataclasses.field(default_factory=list)       # first rows of the delivery (1-based)
    keys: list[str] = dataclasses.field(default_factory=list)       # their point numbers / ids
    extent: list[float] | None = None                   # [min lon, min lat, max lon, max lat]
    message_zh: str = ""
    message_en: str = ""

    def add(self, f: Finding) -> None:
        """Count one finding into the group."""
        self.count += 1
        if f.row is not None and len(self.rows) < FIRST_ROWS:
            self.rows.append(int(f.row))
            if f.key is not None:
                self.keys.append(str(f.key))
        if f.x is not None and f.y is not None and f.x == f.x and f.y == f.y:
            x, y = float(f.x), float(f.y)
            e = self.extent
            self.extent = [x, y, x, y] if e is None else [min(e[0], x), min(e[1], y), max(e[2], x), max(e[3], y)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def _value_key(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and v != v):
        return None
    text = str(v)
    return text if len(text) <= 60 else text[:57] + "…"


def groups(report: Report) -> list[Group]:
    """Findings grouped by rule × layer × field × value; errors first, then the biggest groups."""
    out: dict[tuple, Group] = {}
    for f in report.findings:
        value = _value_key(f.value)
        k = (f.rule_id, f.source_layer, f.field, value)
        g = out.get(k)
        if g is None:
            g = out[k] = Group(f.rule_id, f.severity.value, f.source_layer, f.field, value,
                               message_zh=f.message_zh, message_en=f.message_en)
        g.add(f)
    return sorted(out.values(), key=lambda g: (_SEV_ORDER.get(g.severity, 3), -g.count, g.rule_id, g.source_layer))


def fix_first(report: Report, limit: int = 10) -> list[dict[str, Any]]:
    """What to fix first: rule × layer × field with their counts and most frequent values,
    errors first, biggest first."""
    agg: dict[tuple, dict[str, Any]] = {}
    for f in report.findings:
        k = (f.rule_id, f.source_layer, f.field)
        a = agg.get(k)
        if a is None:
            a = agg[k] = {"rule_id": f.rule_id, "severity": f.severity.value, "source_layer": f.source_layer,
                          "field": f.field, "count": 0, "values": Counter(), "message_zh": f.message_zh,
                          "message_en": f.message_en}
        a["count"] += 1
        v = _value_key(f.value)
        if v is not None:
            a["values"][v] += 1
    rows = sorted(agg.values(), key=lambda a: (_SEV_ORDER.get(a["severity"], 3), -a["count"]))[:limit]
    for a in rows:
        a["top_values"] = [{"value": v, "count": n} for v, n in a.pop("values").most_common(5)]
    return rows


def report_dict(report: Report) -> dict[str, Any]:
    """JSON-ready report: ``summary``, ``groups`` (:func:`groups`) and every finding."""
    return {"summary": summary(report), "groups": [g.to_dict() for g in groups(report)],
            "findings": [f.to_dict() for f in report.findings]}


def summary(report: Report) -> dict[str, Any]:
    """The report's summary: verdict, counts, layers with their mapping, notes, what to fix first."""
    rules = load_rules()
    d = report.delivery
    by_rule = Counter(f.rule_id for f in report.findings)
    by_layer = Counter(f.source_layer for f in report.findings)
    by_sev = Counter(f.severity.value for f in report.findings)
    severity: dict[str, str] = {}
    for f in report.findings:
        severity.setdefault(f.rule_id, f.severity.value)
    rule_rows = [{"rule_id": rid, "name_zh": rules[rid].name_zh if rid in rules else rid,
                  "name_en": rules[rid].name_en if rid in rules else rid,
                  "severity": severity[rid], "count": n}
                 for rid, n in sorted(by_rule.items())]
    layers = [{"source_layer": b.source_layer, "file": b.file, "target": b.target, "profile": b.profile_id,
               "rows": len(b), "source_crs": b.source_crs, "encoding": b.encoding, "network": b.network,
               "subtype": b.subtype, "findings": by_layer.get(b.source_layer, 0),
               "decided_by": b.mapping.decided_by if b.mapping else None,
               "mapping_reason": b.mapping.reason if b.mapping else "",
               "spec": b.spec_id, "columns": list(feature_table(b.target).kinds()),
               "mapping": b.mapping.rows() if b.mapping else [],
               "value_mappings": [v.to_dict() for v in b.mapping.values] if b.mapping else []} for b in d.batches]
    return {
        "file_name": d.file_name, "sha256": d.sha256, "size_bytes": d.size_bytes, "county_code": d.county_code,
        "accepted": not report.has_errors, "rows": d.counts(),
        "findings_total": len(report.findings),
        "by_severity": {s: by_sev.get(s, 0) for s in ("error", "warning", "info")},
        "by_rule": rule_rows, "by_layer": dict(sorted(by_layer.items())), "layers": layers,
        "notes": [{"source_layer": n.source_layer, "topic": n.topic, "message_zh": n.message_zh,
                   "message_en": n.message_en} for n in d.notes],
        "fix_first": fix_first(report),
    }


def write_json(report: Report, path: Path | str) -> Path:
    """Write the report as UTF-8 JSON."""
    path = Path(path)
    path.write_text(json.dumps(report_dict(report), ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    return path


def write_groups(report: Report, path: Path | str) -> Path:
    """Write the summary and every group, without the findings, as JSON Lines: the first line is
    ``{"summary": …, "groups_total": n}``, then one group per line, in :func:`groups` order."""
    path = Path(path)
    grouped = groups(report)
    with path.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"summary": summary(report), "groups_total": len(grouped)}, ensure_ascii=False,
                            default=str) + "\n")
        for g in grouped:
            fh.write(json.dumps(g.to_dict(), ensure_ascii=False, default=str) + "\n")
    return path


def read_groups(path: Path | str, offset: int = 0, limit: int = 50) -> dict[str, Any]:
    """A page of a :func:`write_groups` file: ``{"summary", "groups_total", "offset", "limit",
    "groups"}`` with groups ``offset`` … ``offset + limit - 1``. Reads the lines up to the page's
    last, parsing only the header and the page."""
    with Path(path).open(encoding="utf-8") as fh:
        head = json.loads(fh.readline())
        page = [json.loads(line) for line in itertools.islice(fh, offset, offset + limit)]
    return {**head, "offset": offset, "limit": limit, "groups": page}


def write_html(report: Report, path: Path | str, *, max_groups: int = HTML_GROUPS,
               max_rows: int = HTML_DETAIL) -> Path:
    """Write a standalone HTML page (inline CSS, no external resources) in Chinese: what to fix
    first, the mapping of each layer, the grouped findings (``max_groups`` biggest) and the
    first ``max_rows`` findings of the biggest groups. Its size does not grow with the number
    of findings beyond those limits."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape  # report writers load on use

    path = Path(path)
    data = {"summary": summary(report)}
    grouped = groups(report)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    names = {r["rule_id"]: r["name_zh"] for r in data["summary"]["by_rule"]}
    detail: list[dict[str, Any]] = []
    for f in _first_of_groups(report, grouped, max_rows):
        r = f.to_dict()
        detail.append({**r, "rule_name_zh": names.get(r["rule_id"], r["rule_id"]),
                       "severity_zh": SEVERITY_ZH.get(r["severity"], r["severity"])})
    html = env.get_template("report.html.j2").render(
        s=data["summary"], groups=grouped[:max_groups], groups_total=len(grouped), rule_names=names,
        rows=detail, truncated=max(len(report.findings) - len(detail), 0), columns=COLUMNS[:10],
        severity_zh=SEVERITY_ZH)
    path.write_text(html, encoding="utf-8")
    return path


def _first_of_groups(report: Report, grouped: list[Group], limit: int) -> list[Finding]:
    """The first findings of the biggest groups, at most ``limit``, in group order."""
    want: dict[tuple, int] = {}
    budget = limit
    for g in grouped:
        if budget <= 0:
            break
        n = min(g.count, FIRST_ROWS, budget)
        want[(g.rule_id, g.source_layer, g.field, g.value)] = n
        budget -= n
    picked: dict[tuple, list[Finding]] = {k: [] for k in want}
    for f in report.findings:
        k = (f.rule_id, f.source_layer, f.field, _value_key(f.value))
        lst = picked.get(k)
        if lst is not None and len(lst) < want[k]:
            lst.append(f)
    return [f for k in want for f in picked[k]]


def write_csv(report: Report, path: Path | str) -> Path:
    """Write every finding as CSV (UTF-8 with BOM, so that Excel reads the Chinese text)."""
    path = Path(path)
    names = {rid: rule.name_zh for rid, rule in load_rules().items()}
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([f"{zh} {en}" if zh != en else zh for _k, zh, en in COLUMNS])
        for f in report.findings:
            d = f.to_dict()
            d["rule_name_zh"] = names.get(f.rule_id, f.rule_id)
            d["severity_zh"] = SEVERITY_ZH.get(d["severity"], d["severity"])
            w.writerow(["" if d.get(k) is None else d.get(k) for k, _zh, _en in COLUMNS])
    return path


def write_xlsx(report: Report, path: Path | str, *, max_rows: int = EXCEL_MAX_ROWS) -> Path:
    """Write a workbook: a summary sheet (verdict, what to fix first, rules, layers, notes), the
    grouped findings, the mapping of each layer, then one sheet per rule with its findings (cut
    at ``max_rows``, Excel's row limit, with a last row saying so; the JSON and CSV hold every finding)."""
    from openpyxl import Workbook  # report writers load on use
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font, PatternFill

    path = Path(path)
    s = summary(report)
    grouped = groups(report)
    wb = Workbook(write_only=True)
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="DDDDDD")

    def header(sheet, labels):
        cells = []
        for label in labels:
            c = WriteOnlyCell(sheet, value=label)
            c.font, c.fill = bold, fill
            cells.append(c)
        sheet.append(cells)

    ws = wb.create_sheet("汇总")
    ws.append(["质检报告 / Validation report"])
    for label, value in (("文件 / File", s["file_name"]), ("SHA-256", s["sha256"]), ("县 / County", s["county_code"]),
                         ("结论 / Result", "通过 accepted" if s["accepted"] else "退回 rejected"),
                         ("错误 / Errors", s["by_severity"]["error"]), ("警告 / Warnings", s["by_severity"]["warning"])):
        ws.append([label, value])
    ws.append([])
    ws.append(["优先修改 What to fix first"])
    ws.append(["规则 Rule", "级别 Severity", "图层 Layer", "字段 Field", "数量 Count", "常见值 Top values", "说明 Message"])
    for a in s["fix_first"]:
        ws.append([a["rule_id"], SEVERITY_ZH.get(a["severity"], a["severity"]), a["source_layer"], a["field"],
                   a["count"], "、".join(f"{v['value']} ×{v['count']}" for v in a["top_values"]), a["message_zh"]])
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

    if grouped:
        sheet = wb.create_sheet("分组")
        header(sheet, ["规则 Rule", "级别 Severity", "图层 Layer", "字段 Field", "值 Value", "数量 Count",
                       "前几行 First rows", "点号 Keys", "范围 Extent", "说明 Message"])
        for g in grouped[:max_rows - 2]:
            sheet.append([g.rule_id, SEVERITY_ZH.get(g.severity, g.severity), g.source_layer, g.field, _cell(g.value),
                          g.count, ", ".join(map(str, g.rows)), ", ".join(g.keys),
                          ", ".join(f"{v:.6f}" for v in g.extent) if g.extent else None, g.message_zh])
        if len(grouped) > max_rows - 2:
            sheet.append([f"其余 {len(grouped) - max_rows + 2} 组见 JSON 报告 / more groups in the JSON report"])

    mapped = [lay for lay in s["layers"] if lay["mapping"]]
    if mapped:
        sheet = wb.create_sheet("映射")
        header(sheet, ["图层 Layer", "交付字段 Source field", "目标字段 Target", "方式 How", "可信度 Confidence",
                       "依据 Reason", "样例 Samples"])
        for lay in mapped:
            for m in lay["mapping"]:
                sheet.append([lay["source_layer"], m["source_field"], m["target"], m["how"], m["confidence"],
                              m["reason"], "、".join(m["samples"])])
            for v in lay["value_mappings"]:
                sheet.append([lay["source_layer"], f"{v['column']}: {v['value']}", v["code"], v["how"], v["confidence"],
                              v["reason"], v["count"]])

    names = {r["rule_id"]: r["name_zh"] for r in s["by_rule"]}
    by_rule: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_rule.setdefault(f.rule_id, []).append(f)
    limit = max_rows - 2                       # header and the row that says the sheet is cut
    for rule in s["by_rule"]:
        sheet = wb.create_sheet(rule["rule_id"][:31])
        header(sheet, [f"{zh} {en}" if zh != en else zh for _key, zh, en in COLUMNS])
        found = by_rule[rule["rule_id"]]
        for f in found[:limit]:
            d = f.to_dict()
            d["rule_name_zh"] = names.get(f.rule_id, f.rule_id)
            d["severity_zh"] = SEVERITY_ZH.get(d["severity"], d["severity"])
            sheet.append([_cell(d.get(k)) for k, _zh, _en in COLUMNS])
        if len(found) > limit:
            sheet.append([f"其余 {len(found) - limit} 条见 CSV/JSON 报告 / {len(found) - limit} more in the CSV "
                          "and JSON reports"])
    wb.save(path)
    return path


def _cell(v: Any) -> Any:
    if v is None or isinstance(v, (int, float, str, bool)):
        return v
    return str(v)

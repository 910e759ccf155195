"""Reports: JSON summary (counts per rule, layer, severity; reader notes), a standalone Chinese
HTML page and an XLSX workbook with a summary sheet and one sheet per rule."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from openpyxl import load_workbook

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import network, write_network_shapefiles, write_xlsx, zip_folder  # noqa: E402

from ingest.model import Delivery, Finding, Report, Severity  # noqa: E402
from ingest.pipeline import read_delivery  # noqa: E402
from ingest.report import groups, read_groups, report_dict, write_csv, write_groups, write_html, write_json  # noqa: E402
from ingest.report import write_xlsx as write_report_xlsx
from ingest.validate import validate  # noqa: E402


def _report(tmp_path):
    pts, lines = network()
    pts.loc[3, "物探点号"] = "YS3"                 # Q01 ×2 (error)
    lines.loc[2, "终点高程"] = lines.loc[2, "起点高程"] + 0.3   # Q15 (warning) and Q10
    lines.loc[0, "材质"] = "<script>alert(1)</script>"           # Q22, must be escaped in HTML
    path = write_xlsx(tmp_path / "成果.xlsx", {"YSPOINT": pts, "YSLINE": lines})
    return validate(read_delivery(path, county="430702"))


def test_report_dict_summary(tmp_path):
    r = _report(tmp_path)
    data = report_dict(r)
    s = data["summary"]
    assert s["accepted"] is False and s["county_code"] == "430702" and s["file_name"] == "成果.xlsx"
    rules = {x["rule_id"]: x for x in s["by_rule"]}
    assert rules["Q01"]["count"] == 2 and rules["Q01"]["severity"] == "error" and rules["Q01"]["name_zh"] == "重复点号"
    assert rules["Q15"]["severity"] == "warning"
    assert s["by_severity"]["error"] == sum(x["count"] for x in s["by_rule"] if x["severity"] == "error")
    assert s["by_layer"]["YSPOINT"] >= 2 and sum(s["by_layer"].values()) == s["findings_total"] == len(data["findings"])
    assert s["rows"] == {"pipe_point": 6, "pipe_segment": 5}
    assert any(n["topic"] == "crs" and "EPSG:4546" in n["message_en"] for n in s["notes"])
    f = data["findings"][0]
    assert set(f) >= {"rule_id", "severity", "source_layer", "row", "key", "field", "value", "message_zh",
                      "message_en", "x", "y"}
    json.dumps(data, ensure_ascii=False)      # serialisable as is


def test_json_file(tmp_path):
    r = _report(tmp_path)
    out = write_json(r, tmp_path / "r.json")
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["summary"]["findings_total"] == len(r.findings)


def test_html_is_standalone_chinese_and_escaped(tmp_path, artifacts):
    r = _report(tmp_path)
    html = write_html(r, tmp_path / "r.html").read_text(encoding="utf-8")
    for word in ("成果质检报告", "规则名称", "级别", "图层", "行号", "点号", "字段", "值", "说明", "重复点号", "倒坡", "退回"):
        assert word in html
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html
    assert "http://" not in html and "https://" not in html and "<link" not in html
    (artifacts / "ingest-report-example.html").write_text(html, encoding="utf-8")


def test_xlsx_summary_and_sheet_per_rule(tmp_path):
    r = _report(tmp_path)
    wb = load_workbook(write_report_xlsx(r, tmp_path / "r.xlsx"), read_only=True)
    rules = sorted({f.rule_id for f in r.findings})
    assert wb.sheetnames == ["汇总", "分组", "映射", *rules]
    summary = [row for row in wb["汇总"].iter_rows(values_only=True)]
    assert any(row[0] == "Q01" and row[4] == 2 for row in summary if row)
    q01 = list(wb["Q01"].iter_rows(values_only=True))
    assert q01[0][0].startswith("规则") and len(q01) == 3
    assert {row[5] for row in q01[1:]} == {"YS3"} and {row[4] for row in q01[1:]} == {3, 4}


def test_clean_delivery_report(tmp_path):
    write_network_shapefiles(tmp_path / "d")
    r = validate(read_delivery(zip_folder(tmp_path / "d", tmp_path / "d.zip"), county="430702"))
    s = report_dict(r)["summary"]
    assert s["accepted"] and s["findings_total"] == 0
    assert {n["topic"] for n in s["notes"]} >= {"encoding", "crs", "profile"}
    html = write_html(r, tmp_path / "ok.html").read_text(encoding="utf-8")
    assert "通过" in html and "GBK" in html
    wb = load_workbook(write_report_xlsx(r, tmp_path / "ok.xlsx"), read_only=True)
    assert wb.sheetnames == ["汇总", "映射"]


def _many_findings(n: int = 200_000) -> Report:
    """A report of ``n`` findings: a few big groups (the same missing point or bad code again and
    again), many small ones (one value each), errors and warnings mixed."""
    delivery = Delivery(path=Path("big.zip"), file_name="big.zip", sha256="0" * 64, size_bytes=1, county_code="430702")
    report = Report(delivery)
    rng = np.random.default_rng(1)
    layers = np.array(["YS_LIN", "WS_LIN", "JZ_buildings"])
    kinds = rng.integers(0, 10, n)
    for i in range(n):
        k = int(kinds[i])
        if k < 5:      # Q22: 5 wrong codes across 3 layers (15 big groups)
            rule, sev, field, value = "Q22", Severity.error, "材质", f"材质{i % 5}"
        elif k < 8:    # Q05: a missing point, a value per row (small groups)
            rule, sev, field, value = "Q05", Severity.error, "终点点号", f"P{i}"
        else:          # Q12: warnings without value
            rule, sev, field, value = "Q12", Severity.warning, None, None
        report.add(Finding(rule, sev, str(layers[i % 3]), i + 1, f"K{i}", field, value, "问题", "problem",
                           111.6 + (i % 100) * 1e-4, 29.0 + (i % 77) * 1e-4))
    return report


def test_grouped_report_at_200k_findings(tmp_path):
    report = _many_findings()
    grouped = groups(report)
    assert sum(g.count for g in grouped) == 200_000
    assert grouped[0].rule_id == "Q22" and grouped[0].severity == "error"          # biggest error group first
    assert [g.count for g in grouped[:15]] == sorted((g.count for g in grouped[:15]), reverse=True)
    assert all(g.severity == "error" for g in grouped if g.rule_id == "Q05")
    assert grouped[-1].severity == "warning"                                        # warnings after every error
    big = grouped[0]
    assert len(big.rows) == 5 and big.rows == sorted(big.rows) and big.extent[0] <= big.extent[2]

    html_path = write_html(report, tmp_path / "big.html")
    html = html_path.read_text(encoding="utf-8")
    assert html_path.stat().st_size < 1_500_000                 # grouped: not one row per finding
    assert html.index("优先修改") < html.index("问题分组") < html.index("问题明细")
    assert "材质0" in html and html.count("<tr class=\"error\">") <= 500 + 1000 + 20
    assert "其余" in html and "CSV/JSON" in html

    first = report_dict(report)["summary"]["fix_first"]
    assert first[0]["rule_id"] == "Q22" and first[0]["count"] > 30_000 and len(first[0]["top_values"]) == 5

    # the groups without the findings, paged (the upload panel's source)
    jsonl = write_groups(report, tmp_path / "big.jsonl")
    page = read_groups(jsonl, 10, 5)
    assert page["groups_total"] == len(grouped) and page["summary"]["findings_total"] == 200_000
    assert page["groups"] == json.loads(json.dumps([g.to_dict() for g in grouped[10:15]]))
    assert read_groups(jsonl, len(grouped), 5)["groups"] == []

    csv_path = write_csv(report, tmp_path / "big.csv")
    with csv_path.open(encoding="utf-8-sig") as fh:
        assert sum(1 for _ in fh) == 200_001

    wb = load_workbook(write_report_xlsx(report, tmp_path / "big.xlsx", max_rows=1000), read_only=True)
    assert wb.sheetnames[:2] == ["汇总", "分组"]
    q22 = list(wb["Q22"].iter_rows(values_only=True))
    assert len(q22) == 1000 and "CSV" in q22[-1][0]           # cut at the row limit, pointing to the CSV
    groups_sheet = list(wb["分组"].iter_rows(values_only=True))
    assert groups_sheet[1][0] == "Q22" and len(groups_sheet) == 1000


def test_csv_report_through_the_pipeline_suffix(tmp_path):
    from ingest.pipeline import write_report

    r = _report(tmp_path)
    path = write_report(r, tmp_path / "r.csv")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0].startswith("规则 Rule") and len(lines) == len(r.findings) + 1

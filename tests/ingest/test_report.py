"""Reports: JSON summary (counts per rule, layer, severity; reader notes), a standalone Chinese
HTML page and an XLSX workbook with a summary sheet and one sheet per rule."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from openpyxl import load_workbook

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import network, write_network_shapefiles, write_xlsx, zip_folder  # noqa: E402

from ingest.pipeline import read_delivery  # noqa: E402
from ingest.report import report_dict, write_html, write_json  # noqa: E402
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
    assert wb.sheetnames == ["汇总", *rules]
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
    assert wb.sheetnames == ["汇总"]

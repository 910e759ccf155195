"""``cim hazards scan | list | export`` as subprocesses, with the documented output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from openpyxl import load_workbook

CIM = Path(sys.executable).parent / "cim"


def cim(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CIM), "hazards", *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, CIM_DATABASE_URL=url))


def test_scan_list_export(hz_url, plant, hz_conn, county, tmp_path):
    plant.building(0, 0, 10, 10, appraisal_grade="D")
    plant.segment("RQ", (-5, 5), (15, 5), pressure_class="ZB", diameter_mm=100, material="PE", install_year=2020)
    hz_conn.commit()
    dry = cim(hz_url, "scan", "--county", county, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "试运行" in dry.stdout and "new" in dry.stdout and "cleared" in dry.stdout
    g01 = next(line for line in dry.stdout.splitlines() if line.strip().startswith("G01"))
    assert g01.split()[1:6] == ["full", "1", "0", "0", "0"]
    assert json.loads(cim(hz_url, "list", "--county", county, "--json").stdout)["numberMatched"] == 0   # nothing written

    run = cim(hz_url, "scan", "--county", county, "--rule", "G01", "--rule", "B01", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)[0]
    assert set(report["rules"]) == {"G01", "B01"} and report["totals"]["new"] == 2
    again = json.loads(cim(hz_url, "scan", "--county", county, "--rule", "G01", "--rule", "B01", "--json").stdout)[0]
    assert again["totals"]["unchanged"] == 2 and again["totals"]["new"] == 0

    listed = cim(hz_url, "list", "--county", county)
    assert listed.returncode == 0 and "共 2 条" in listed.stdout and "一级红" in listed.stdout

    out = tmp_path / "台账.xlsx"
    exp = cim(hz_url, "export", "--out", str(out), "--county", county)
    assert exp.returncode == 0, exp.stderr
    wb = load_workbook(out)
    assert wb.sheetnames[0] == "汇总" and {"燃气管道", "房屋"} <= set(wb.sheetnames)
    html = tmp_path / "台账.html"
    assert cim(hz_url, "export", "--out", str(html), "--county", county).returncode == 0
    assert "风险隐患管理台账" in html.read_text(encoding="utf-8")

    with hz_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM cim.audit_log WHERE action = 'hazard.scan' AND county_code = %s", (county,))
        assert cur.fetchone()[0] == 2                              # the two real scans, not the dry run
    hz_conn.rollback()


def test_cli_errors(hz_url, tmp_path):
    bad_rule = cim(hz_url, "scan", "--county", "439001", "--rule", "ZZ9")
    assert bad_rule.returncode == 2 and "ZZ9" in bad_rule.stderr
    empty = cim(hz_url, "scan", "--county", "110101")
    assert empty.returncode == 1 and "no current data" in empty.stderr
    assert cim(hz_url, "scan", "--county", "12").returncode == 2
    assert cim(hz_url, "list", "--status", "flying").returncode == 2
    assert cim(hz_url, "export", "--out", str(tmp_path / "x.csv")).returncode == 2

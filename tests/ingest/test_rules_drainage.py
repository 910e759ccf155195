"""Gravity drainage rules: reverse slope (Q15), smaller pipe downstream (Q16), flow-direction
conflicts (Q17), storm/sewer cross-connections (Q18), drains not ending at a node (Q26)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import network, write_xlsx  # noqa: E402

from ingest.pipeline import read_delivery  # noqa: E402
from ingest.validate import validate  # noqa: E402


def run(tmp_path, sheets):
    return validate(read_delivery(write_xlsx(tmp_path / "t.xlsx", sheets), county="430702"))


def by_rule(report, rule):
    return [f for f in report.findings if f.rule_id == rule]


def test_q15_reverse_slope(tmp_path):
    pts, lines = network()
    lines.loc[2, "终点高程"] = lines.loc[2, "起点高程"] + 0.3     # YS3 → YS4 climbs 0.3 m
    pts.loc[3, "地面高程"] = pts.loc[3, "地面高程"] + 0.3 + 0.15    # keep the closure at YS4 (Q10) consistent
    lines.loc[3, "起点高程"] = lines.loc[2, "终点高程"]
    r = run(tmp_path, {"YSPOINT": pts, "YSLINE": lines})
    q15 = by_rule(r, "Q15")
    assert [(x.row, x.key) for x in q15] == [(3, "YS3-YS4")]
    assert q15[0].value == pytest.approx(0.3) and "倒坡" in q15[0].message_zh


def test_q15_honours_the_flow_direction_field(tmp_path):
    pts, lines = network()
    lines["流向"] = "+"
    r = run(tmp_path, {"YSPOINT": pts, "YSLINE": lines})
    assert not by_rule(r, "Q15")
    lines.loc[0, "流向"] = "-"       # says end → start, but the inverts fall start → end
    r = run(tmp_path, {"YSPOINT": pts, "YSLINE": lines})
    assert [x.row for x in by_rule(r, "Q15")] == [1]


def test_q16_smaller_pipe_downstream(tmp_path):
    pts, lines = network()
    lines["管径"] = ["300", "400", "500", "400", "600"]          # 500 then 400 at YS4
    r = run(tmp_path, {"YSPOINT": pts, "YSLINE": lines})
    q16 = by_rule(r, "Q16")
    assert [(x.row, x.value) for x in q16] == [(4, 400.0)] and "YS4" in q16[0].message_zh


def test_q17_node_with_only_inflows(tmp_path):
    pts, lines = network()
    pts.loc[5, ["特征", "附属物"]] = ["", "检查井"]               # the last point is no outfall any more
    r = run(tmp_path, {"YSPOINT": pts, "YSLINE": lines})
    assert [x.key for x in by_rule(r, "Q17")] == ["YS6"]


def test_q18_storm_sewer_cross_connection(tmp_path):
    ys_pts, ys_lines = network(prefix="YS")
    ws_pts, ws_lines = network(prefix="WS", n0=3_214_050.0)
    cross = pd.DataFrame({"起点点号": ["WS3"], "终点点号": ["YS4"], "起点埋深": [1.5], "终点埋深": [1.5],
                          "起点高程": [None], "终点高程": [None], "管径": ["300"], "材质": ["PE"], "埋设方式": ["直埋"]})
    ws_lines = pd.concat([ws_lines, cross], ignore_index=True)
    # the WS line table names a YS point: put both networks in one PS point table
    pts = pd.concat([ys_pts, ws_pts], ignore_index=True)
    r = run(tmp_path, {"PSPOINT": pts, "YSLINE": ys_lines, "WSLINE": ws_lines})
    q18 = by_rule(r, "Q18")
    assert q18 and all(x.key in ("YS4", "WS3") for x in q18)
    assert any(x.source_layer == "WSLINE" and x.row == 6 for x in q18)


def test_q26_drain_ends_at_a_plain_point(tmp_path):
    pts, lines = network()
    pts.loc[2, "附属物"] = ""
    r = run(tmp_path, {"YSPOINT": pts, "YSLINE": lines})
    assert {x.key for x in by_rule(r, "Q26")} == {"YS3"}


def test_drainage_census_pipes(tmp_path):
    wells = pd.DataFrame({"检查井编号": ["W1", "W2", "W3"], "类别": ["污水"] * 3, "X": [3214000.0] * 3,
                          "Y": [567000.0, 567030.0, 567060.0], "地面高程": [50.0, 49.9, 49.8]})
    pipes = pd.DataFrame({"起点井编号": ["W1", "W2"], "终点井编号": ["W2", "W3"], "类别": ["污水", "污水"],
                          "起点管底高程": [48.0, 47.7], "终点管底高程": [47.9, 47.8], "管径": [400, 300],
                          "材质": ["2", "5"]})
    r = run(tmp_path, {"检查井": wells, "排水管": pipes})
    assert [x.row for x in by_rule(r, "Q15")] == [2]
    assert [x.row for x in by_rule(r, "Q16")] == [2]
    assert [x.key for x in by_rule(r, "Q17")] == ["W3"]

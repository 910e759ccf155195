"""A W×H section (a duct bank or box culvert, e.g. "400X200") satisfies the diameter field."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ingest.mapping.normalize import _section, as_float, as_year, per_value
from ingest.pipeline import read_delivery
from ingest.validate import validate
from tests.ingest import fixtures


def test_section_text_parses_to_width_and_height():
    d, w, h = _section(pd.Series(["300", "DN400", "Φ110", "400X200", "1200×800"]))
    assert d.tolist()[:3] == [300.0, 400.0, 110.0]
    assert np.isnan(d[3]) and (w[3], h[3]) == (400.0, 200.0)
    assert (w[4], h[4]) == (1200.0, 800.0)


def test_box_sections_are_neither_missing_nor_unparsable(tmp_path):
    pts, lines = fixtures.network(prefix="YS")
    lines["管径"] = ["400X200", "300", "1200×800", "600", "800"]
    fixtures.write_shapefile(tmp_path, "YSPOINT", pts, fixtures.point_geoms(pts))
    fixtures.write_shapefile(tmp_path, "YSLINE", lines, fixtures.line_geoms(pts, lines))
    delivery = read_delivery(tmp_path, county="430703")
    seg = next(b for b in delivery.batches if b.target == "pipe_segment").frame
    assert seg["width_mm"].tolist()[0] == 400.0 and seg["height_mm"].tolist()[2] == 800.0
    report = validate(delivery)
    about_size = [f for f in report.findings if f.rule_id in ("Q23", "F02") and f.field and "管径" in f.field]
    assert about_size == []
    assert not report.has_errors


def test_drainage_census_attributes_on_cjj61_points(tmp_path):
    pts, lines = fixtures.network(prefix="YS")
    pts["设施类型"] = ["检查井"] * 5 + ["排放口"]
    pts["防坠网"] = ["是", "否", "是", "是", "否", None]
    pts["受纳水体"] = [None] * 5 + ["清水河"]
    pts["拍门"] = [None] * 5 + ["是"]
    pts["常水位"] = [None] * 5 + [28.6]
    fixtures.write_shapefile(tmp_path, "YSPOINT", pts, fixtures.point_geoms(pts))
    fixtures.write_shapefile(tmp_path, "YSLINE", lines, fixtures.line_geoms(pts, lines))
    points = next(b for b in read_delivery(tmp_path, county="430703").batches if b.target == "pipe_point").frame
    assert points["anti_fall_net"].tolist()[:3] == [True, False, True]
    assert points["receiving_water"].tolist()[-1] == "清水河"
    assert bool(points["flap_gate"].tolist()[-1]) is True
    assert points["normal_water_z"].tolist()[-1] == 28.6
    assert points["node_type"].tolist()[-1] == "outfall"


def test_unreadable_file_message_names_no_server_path(tmp_path):
    import pytest

    from cim.errors import UnreadableInput

    bad = tmp_path / "deep" / "folder" / "a.geojson"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"type":')
    with pytest.raises(UnreadableInput) as err:
        read_delivery(bad, county="430703")
    for text in (err.value.zh, err.value.en):
        assert str(tmp_path) not in text and "a.geojson" in text
    assert "无法读取" in err.value.zh and "It might help" not in err.value.en


def test_repeated_values_are_parsed_once_each_with_the_same_results():
    values = pd.Series(["400X200", "DN300", None, "300", "1200×800", "", "Φ110", "无"] * 50, dtype=object)
    once = per_value(values, _section)
    for a, b in zip(once, _section(values), strict=True):
        pd.testing.assert_series_equal(a, b, check_names=False)
    years = pd.Series(["2005年", "2005-03-01", None, "19", "1899", "2010"] * 40, dtype=object)
    parsed = as_year(years)
    assert str(parsed.dtype) == "Int64"
    assert parsed.fillna(-1).tolist() == [2005, 2005, -1, -1, 1899, 2010] * 40
    numbers = as_float(pd.Series(["1,200.5", "3", None, "x", "2，000"] * 30, dtype=object))
    assert numbers.dtype == "float64" and np.array_equal(numbers[:5], [1200.5, 3.0, np.nan, np.nan, 2000.0],
                                                          equal_nan=True)

"""CQL2 filters (OGC API – Features Part 3): parser, compiler and the items endpoint."""

from __future__ import annotations

import json

import pytest

from cim.errors import InvalidInput
from layers import cql2
from layers.catalog import load_catalog
from layers.sqlbuild import Params

BBOX_TEST = "100.49,24.99,100.52,25.02"


def test_text_parses_to_the_json_encoding():
    assert cql2.parse_text("height_m > 10 AND NOT (use_code = 'ZZ' OR name LIKE '测试%')") == {
        "op": "and", "args": [
            {"op": ">", "args": [{"property": "height_m"}, 10]},
            {"op": "not", "args": [{"op": "or", "args": [
                {"op": "=", "args": [{"property": "use_code"}, "ZZ"]},
                {"op": "like", "args": [{"property": "name"}, "测试%"]}]}]}]}
    assert cql2.parse_text("floors_above BETWEEN 2 AND 6") == {
        "op": "between", "args": [{"property": "floors_above"}, 2, 6]}
    assert cql2.parse_text("code NOT IN ('a', 'b''c')") == {
        "op": "not", "args": [{"op": "in", "args": [{"property": "code"}, ["a", "b'c"]]}]}
    assert cql2.parse_text("name IS NOT NULL") == {"op": "not", "args": [{"op": "isNull", "args": [{"property": "name"}]}]}
    tree = cql2.parse_text("S_INTERSECTS(geometry, POLYGON((0 0, 1 0, 1 1, 0 0)))")
    assert tree["op"] == "s_intersects" and tree["args"][1]["type"] == "Polygon"
    assert cql2.parse_text("height_m >= -1.5e1") == {"op": ">=", "args": [{"property": "height_m"}, -15.0]}
    assert cql2.parse_text('"use_code" = \'ZZ\'')["args"][0] == {"property": "use_code"}


def _sql(text: str, layer: str = "buildings") -> tuple[str, list]:
    spec = load_catalog().get(layer)
    params = Params()
    sql = cql2.compile_filter(cql2.parse_text(text), cql2.FilterContext(spec, params))
    return sql, params.values


def test_values_are_bound_never_in_sql_text():
    sql, values = _sql("name = 'x''; DROP TABLE cim.building; --' AND height_m < 3")
    assert "DROP" not in sql and values[0] == "x'; DROP TABLE cim.building; --"
    assert values[1] == 3.0  # coerced to the float attribute type
    sql, _ = _sql("S_INTERSECTS(geometry, POINT(100 25))")
    assert 't."geom"' in sql and "ST_Transform(t." not in sql  # the column is never transformed


@pytest.mark.parametrize("text", [
    "height_m >", "nope = 1", "height_m = 'abc'", "code LIKE 3 AND", "(height_m > 1", "S_WITHIN(geometry)",
    "S_INTERSECTS(height_m, POINT(1 2))", "code = geometry", "ACCENTI(name) = 'a'", "height_m + 1 > 2",
    "floors_above IN ()", "floors_above IN ('x')", "DATE(1) = build_year", "POINT(1 2", "1 = 1 1",
    "name = ''''' OR", "@", "geometry = 'x'", "S_DWITHIN(geometry, POINT(1 2), -5)", "NOT", "TRUE AND", "x" * 30000,
])
def test_malformed_filters_raise_bilingual_errors(text):
    with pytest.raises(InvalidInput) as exc:
        _sql(text)
    assert exc.value.zh and exc.value.en


def _items(client, **params) -> list[str]:
    r = client.get("/ogc/collections/buildings/items", params={"bbox": BBOX_TEST, "limit": 100, **params})
    assert r.status_code == 200, r.text
    return sorted(f["properties"]["code"] for f in r.json()["features"])


def test_filter_comparisons_over_http(client):
    assert _items(client, filter="height_m > 20") == ["TB-004", "TB-005"]
    assert _items(client, filter="height_m >= 12 AND use_code = 'ZZ'") == ["TB-002", "TB-003"]
    assert _items(client, filter="floors_above BETWEEN 4 AND 6") == ["TB-002", "TB-003"]
    assert _items(client, filter="code IN ('TB-001', 'TB-005', 'nope')") == ["TB-001", "TB-005"]
    assert _items(client, filter="name LIKE '测试大楼_'") == ["TB-001", "TB-002", "TB-003", "TB-004", "TB-005"]
    assert _items(client, filter="CASEI(code) = casei('tb-003')") == ["TB-003"]
    assert _items(client, filter="self_built") == ["TB-005"]
    assert _items(client, filter="NOT self_built AND use_code <> 'ZZ'") == ["TB-004"]
    assert _items(client, filter="appraisal_grade IS NULL AND build_year < 1993") == ["TB-001", "TB-002"]
    assert _items(client, filter="id = 0") == []


def test_filter_spatial_and_filter_crs(client):
    # TB-002 spans lon 100.5020..100.5022, lat 25.005..25.00518
    assert _items(client, filter="S_INTERSECTS(geometry, POINT(100.5021 25.0051))") == ["TB-002"]
    assert _items(client, filter="S_WITHIN(geometry, BBOX(100.5015, 25.004, 100.5035, 25.006))") == ["TB-002", "TB-003"]
    assert _items(client, filter="S_CONTAINS(geometry, POINT(100.5041 25.0051))") == ["TB-004"]
    # the same point in EPSG:4490 axis order (lat lon)
    assert _items(client, **{"filter": "S_INTERSECTS(geometry, POINT(25.0051 100.5021))",
                             "filter-crs": "http://www.opengis.net/def/crs/EPSG/0/4490"}) == ["TB-002"]
    # within 30 m of a point 25 m east of TB-001's east edge (100.5012): only TB-001
    assert _items(client, filter="S_DWITHIN(geometry, POINT(100.50145 25.0051), 30)") == ["TB-001"]
    assert _items(client, filter="S_DWITHIN(geometry, POINT(100.50145 25.0051), 10)") == []


def test_filter_cql2_json(client):
    tree = {"op": "and", "args": [{"op": ">", "args": [{"property": "height_m"}, 10]},
                                  {"op": "s_intersects", "args": [{"property": "geometry"},
                                                                  {"type": "Polygon", "coordinates": [[
                                                                      [100.5025, 25.0], [100.5045, 25.0],
                                                                      [100.5045, 25.01], [100.5025, 25.01], [100.5025, 25.0]]]}]}]}
    assert _items(client, **{"filter": json.dumps(tree), "filter-lang": "cql2-json"}) == ["TB-003", "TB-004"]
    bad = {"op": "=", "args": [{"property": "secret_column"}, 1]}
    r = client.get("/ogc/collections/buildings/items", params={"filter": json.dumps(bad), "filter-lang": "cql2-json"})
    assert r.status_code == 400 and "secret_column" in r.json()["message_en"]


def test_filter_on_drainage_layer_keeps_spec_where(client):
    r = client.get("/ogc/collections/drainage_pipes/items", params={"filter": "material = 'PE'", "bbox": BBOX_TEST})
    assert r.json()["features"] == []  # PE pipes exist, but only in JS/RQ networks
    r = client.get("/ogc/collections/pipeline_segments/items", params={"filter": "material = 'PE'", "bbox": BBOX_TEST})
    assert sorted(f["properties"]["code"] for f in r.json()["features"]) == ["TSEG-JS", "TSEG-RQ"]

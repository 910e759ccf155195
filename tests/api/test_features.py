"""OGC API – Features Parts 1 and 2 over real HTTP against the seeded test county."""

from __future__ import annotations

import psycopg2
import pytest
from pyproj import Transformer

from cim.crs import output_crs_list

BBOX_TEST = "100.49,24.99,100.52,25.02"  # the test county


def _codes(fc: dict, key: str = "code") -> list:
    return [f["properties"][key] for f in fc["features"]]


def test_landing_links(client):
    r = client.get("/ogc")
    assert r.status_code == 200
    rels = {link["rel"]: link["href"] for link in r.json()["links"]}
    assert rels["service-desc"].endswith("/openapi.json")
    assert rels["service-doc"].endswith("/docs")
    assert rels["conformance"].endswith("/ogc/conformance")
    assert rels["data"].endswith("/ogc/collections")
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/ogc/").json()["links"] == r.json()["links"]
    assert client.get("/ogc/collections/").status_code == 200


def test_conformance_classes(client):
    classes = client.get("/ogc/conformance").json()["conformsTo"]
    for tail in ("ogcapi-features-1/1.0/conf/core", "ogcapi-features-1/1.0/conf/geojson",
                 "ogcapi-features-2/1.0/conf/crs",
                 "ogcapi-features-3/1.0/conf/filter", "ogcapi-features-3/1.0/conf/features-filter",
                 "cql2/1.0/conf/cql2-text", "cql2/1.0/conf/cql2-json", "cql2/1.0/conf/basic-cql2",
                 "cql2/1.0/conf/basic-spatial-functions", "ogcapi-tiles-1/1.0/conf/mvt"):
        assert any(c.endswith(tail) for c in classes), tail
    # /openapi.json is OpenAPI 3.1: the 3.0 requirements classes are not claimed, the link says 3.1
    assert not any(c.endswith("/oas30") for c in classes)
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    desc = [ln for ln in client.get("/ogc").json()["links"] if ln["rel"] == "service-desc"]
    assert desc[0]["type"] == "application/vnd.oai.openapi+json;version=3.1"


def test_collections_list_every_public_layer(client):
    body = client.get("/ogc/collections").json()
    ids = [c["id"] for c in body["collections"]]
    for layer in ("buildings", "pipeline_points", "pipeline_segments", "drainage_nodes", "drainage_pipes",
                  "gas_points", "gas_pipes", "green_spaces", "streetlights", "admin_areas"):
        assert layer in ids
    b = next(c for c in body["collections"] if c["id"] == "buildings")
    assert b["title"] == "房屋建筑" and "Buildings" in b["description"]
    assert b["itemType"] == "feature"
    assert b["storageCrs"].endswith("/EPSG/0/4490")
    assert "http://www.opengis.net/def/crs/OGC/1.3/CRS84" in b["crs"]
    for epsg in output_crs_list():
        assert f"http://www.opengis.net/def/crs/EPSG/0/{epsg}" in b["crs"]
    rels = {link["rel"]: link["href"] for link in b["links"]}
    assert rels["items"].endswith("/ogc/collections/buildings/items")
    assert rels["http://www.opengis.net/def/rel/ogc/1.0/queryables"].endswith("/buildings/queryables")
    assert rels["http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"].endswith("/ogc/collections/buildings/tiles")
    w, s, e, n = b["extent"]["spatial"]["bbox"][0]
    assert w <= 100.501 and e >= 100.5052 and s <= 25.005 and n >= 25.00518


def test_queryables_schema(client):
    r = client.get("/ogc/collections/buildings/queryables")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/schema+json")
    props = r.json()["properties"]
    assert props["height_m"]["type"] == "number" and props["floors_above"]["type"] == "integer"
    assert props["code"]["title"].startswith("建筑编号")
    assert "ground_z" not in props  # not exposed by the buildings spec
    r = client.get("/ogc/collections/buildings/sortables")
    assert r.status_code == 200 and "height_m" in r.json()["properties"] and "geometry" not in r.json()["properties"]


def test_items_bbox_paging_and_links(client, seeded):
    r = client.get("/ogc/collections/streetlights/items", params={"bbox": BBOX_TEST, "limit": 5})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/geo+json")
    assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and fc["numberMatched"] == 12 and fc["numberReturned"] == 5
    assert fc["timeStamp"].endswith("Z")
    assert _codes(fc, "pole_no") == ["LD-001", "LD-002", "LD-003", "LD-004", "LD-005"]
    assert fc["features"][0]["id"] == seeded["LD-001"]
    assert fc["features"][0]["geometry"] == {"type": "Point", "coordinates": [100.5002, 25.003]}
    seen = _codes(fc, "pole_no")
    page = fc
    while True:
        nxt = [link["href"] for link in page["links"] if link["rel"] == "next"]
        if not nxt:
            break
        assert "bbox=" in nxt[0] and "limit=5" in nxt[0]
        page = client.get(nxt[0]).json()
        seen += _codes(page, "pole_no")
        assert any(link["rel"] == "prev" for link in page["links"])
    assert seen == [f"LD-{i:03d}" for i in range(1, 13)]


def test_items_attribute_filter_sortby_properties(client):
    fc = client.get("/ogc/collections/buildings/items",
                    params={"bbox": BBOX_TEST, "use_code": "ZZ", "sortby": "-height_m", "properties": "code,height_m"}).json()
    assert _codes(fc) == ["TB-003", "TB-002", "TB-001"]
    assert set(fc["features"][0]["properties"]) == {"code", "height_m"}
    fc = client.get("/ogc/collections/buildings/items", params={"bbox": BBOX_TEST, "self_built": "true"}).json()
    assert _codes(fc) == ["TB-005"]
    fc = client.get("/ogc/collections/buildings/items", params={"bbox": BBOX_TEST, "floors_above": "4"}).json()
    assert _codes(fc) == ["TB-002"]


def test_items_never_show_old_rows_and_respect_spec_where(client):
    fc = client.get("/ogc/collections/buildings/items", params={"bbox": BBOX_TEST, "limit": 100}).json()
    assert "TB-OLD" not in _codes(fc) and len(fc["features"]) == 5
    fc = client.get("/ogc/collections/drainage_pipes/items", params={"bbox": BBOX_TEST}).json()
    assert _codes(fc) == ["TSEG-YS"]
    fc = client.get("/ogc/collections/pipeline_segments/items", params={"bbox": BBOX_TEST}).json()
    assert sorted(_codes(fc)) == ["TSEG-JS", "TSEG-RQ", "TSEG-YS"]


def test_single_item_and_404(client, seeded):
    fid = seeded["TB-002"]
    r = client.get(f"/ogc/collections/buildings/items/{fid}")
    assert r.status_code == 200
    f = r.json()
    assert f["type"] == "Feature" and f["id"] == fid and f["properties"]["code"] == "TB-002"
    assert f["geometry"]["type"] == "MultiPolygon"
    assert client.get(f"/ogc/collections/buildings/items/{seeded['TB-OLD']}").status_code == 404
    assert client.get(f"/ogc/collections/streetlights/items/{fid}").status_code in (200, 404)
    assert client.get("/ogc/collections/buildings/items/999999999").status_code == 404
    assert client.get("/ogc/collections/buildings/items/abc").status_code == 404
    r = client.get("/ogc/collections/nope/items")
    assert r.status_code == 404 and r.json()["message_en"] and r.json()["message_zh"]


def test_crs_output_axis_order(client, seeded):
    fid = seeded["LD-001"]
    base = f"/ogc/collections/streetlights/items/{fid}"
    r = client.get(base, params={"crs": "http://www.opengis.net/def/crs/EPSG/0/4490"})
    assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/EPSG/0/4490>"
    assert r.json()["geometry"]["coordinates"] == [25.003, 100.5002]  # lat/lon per EPSG axis order
    r = client.get(base, params={"crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"})
    assert r.json()["geometry"]["coordinates"] == [100.5002, 25.003]
    r = client.get(base, params={"crs": "http://www.opengis.net/def/crs/EPSG/0/3857"})
    x, y = r.json()["geometry"]["coordinates"]
    ex, ey = Transformer.from_crs(4490, 3857, always_xy=True).transform(100.5002, 25.003)
    assert abs(x - ex) < 0.01 and abs(y - ey) < 0.01
    # CGCS2000 3-degree GK zone (EPSG:4544): northing first
    r = client.get(base, params={"crs": "http://www.opengis.net/def/crs/EPSG/0/4544"})
    north, east = r.json()["geometry"]["coordinates"]
    ee, en = Transformer.from_crs(4490, 4544, always_xy=True).transform(100.5002, 25.003)
    assert abs(north - en) < 0.01 and abs(east - ee) < 0.01
    assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/EPSG/0/4544>"


def test_bbox_crs(client):
    # the test county in EPSG:4490 axis order (lat, lon)
    r = client.get("/ogc/collections/streetlights/items",
                   params={"bbox": "24.99,100.49,25.02,100.52", "bbox-crs": "http://www.opengis.net/def/crs/EPSG/0/4490",
                           "limit": 100})
    assert r.json()["numberMatched"] == 12
    # a Web Mercator bbox around LD-001 only
    x, y = Transformer.from_crs(4490, 3857, always_xy=True).transform(100.5002, 25.003)
    r = client.get("/ogc/collections/streetlights/items",
                   params={"bbox": f"{x - 5},{y - 5},{x + 5},{y + 5}", "bbox-crs": "EPSG:3857"})
    assert _codes(r.json(), "pole_no") == ["LD-001"]


def test_html_for_browsers(client, seeded):
    browser = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    for path in ("/ogc", "/ogc/conformance", "/ogc/collections", "/ogc/collections/streetlights",
                 f"/ogc/collections/streetlights/items/{seeded['LD-001']}"):
        r = client.get(path, headers=browser)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
    r = client.get("/ogc/collections/streetlights/items", params={"bbox": BBOX_TEST, "limit": 5, "f": "html"})
    assert r.headers["content-type"].startswith("text/html") and "LD-005" in r.text and "LD-006" not in r.text
    assert "offset=5" in r.text and r.text.count("f=html") >= 1
    nxt = r.text.split("offset=5")[0].rsplit("href='", 1)[1] + "offset=5" + r.text.split("offset=5")[1].split("'")[0]
    assert "LD-006" in client.get(nxt.replace("&amp;", "&")).text
    # machine clients keep JSON
    assert client.get("/ogc/collections", headers={"accept": "*/*"}).headers["content-type"].startswith("application/json")
    assert client.get("/ogc", params={"f": "json"}, headers=browser).json()["links"]


def test_datetime_is_accepted_and_selects_everything(client):
    for value in ("2020-01-01", "2020-01-01T00:00:00Z", "../2030-01-01", "2019-01-01/.."):
        fc = client.get("/ogc/collections/streetlights/items", params={"bbox": BBOX_TEST, "datetime": value}).json()
        assert fc["numberMatched"] == 12, value


def test_items_count_equals_database(client, db_url):
    conn = psycopg2.connect(db_url)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM cim.pipe_point WHERE is_current AND network = 'PS'")
        expected = cur.fetchone()[0]
    conn.close()
    fc = client.get("/ogc/collections/drainage_nodes/items", params={"limit": 10000}).json()
    assert fc["numberMatched"] == expected == fc["numberReturned"]


@pytest.mark.parametrize("params", [
    {"bbox": "1,2,3"}, {"bbox": "a,b,c,d"}, {"bbox": "100,30,101,20"}, {"bbox": "100,20,101,95"},
    {"bbox": "nan,1,2,3"}, {"bbox": ""}, {"bbox": "1,2,3,4,5"},
    {"bbox-crs": "EPSG:4326"}, {"bbox": "1,2,3,4", "bbox-crs": "EPSG:999999"},
    {"crs": "EPSG:2000000"}, {"crs": "nonsense"}, {"crs": "EPSG:32650"}, {"crs": "x" * 500},
    {"limit": "0"}, {"limit": "-1"}, {"limit": "ten"}, {"limit": "1e3"},
    {"offset": "-5"}, {"offset": "x"}, {"offset": "99999999999999999999"},
    {"sortby": "nope"}, {"sortby": "+geom"}, {"sortby": "height_m;drop table x"},
    {"properties": "code,nope"}, {"unknown_param": "1"}, {"floors_above": "two"}, {"self_built": "maybe"},
    {"floors_above": "99999999999999999999999"},
    {"filter": "height_m >"}, {"filter": "nope = 1"}, {"filter": "height_m = 'abc'"},
    {"filter": "code = 1", "filter-lang": "sql"}, {"filter": "{not json", "filter-lang": "cql2-json"},
    {"filter": "S_INTERSECTS(geometry, POINT(1))"}, {"filter": "  "},
    {"filter": "S_INTERSECTS(geometry, POINT(1 2))", "filter-crs": "EPSG:1"},
    {"datetime": "yesterday"}, {"datetime": "2020-01-01/2021-01-01/2022-01-01"}, {"f": "xml"}, {"f": "html", "f ": "x"}, {"limit": "1", "limit ": "2"},
])
def test_bad_input_is_400_bilingual(client, params):
    r = client.get("/ogc/collections/buildings/items", params=params)
    assert r.status_code == 400, (params, r.status_code, r.text[:300])
    body = r.json()
    assert body["message_zh"] and body["message_en"] and body["code"] in ("invalid_input", "crs")

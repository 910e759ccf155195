"""Bad input never yields a 500; SQL text is stable per request shape; filters use the GiST index."""

from __future__ import annotations

import json
import random

import asyncpg
import psycopg2
import pytest

from layers import features as lf
from layers.catalog import load_catalog
from layers.sqlbuild import Params
from tests import aio

NASTY = ["", " ", "'", '"', "\\", "%", "_", "\x00", "NaN", "inf", "-inf", "1e400", "-0", "9" * 30, "１２", "测试",
         "' OR 1=1 --", "); DROP TABLE cim.building; --", "$1", "::text", "{", "[", "null", "true", "a" * 5000,
         "POINT(1 2)", "1,2,3,4", ",,,", "1,2,3,4,5,6", "100,25,101,26", "EPSG:4490", "CRS84", "%00", "\n", "\t"]
PARAMS = ["bbox", "bbox-crs", "limit", "offset", "sortby", "properties", "crs", "filter", "filter-lang", "filter-crs",
          "f", "code", "floors_above", "height_m", "self_built", "build_year"]


def _ok_error(r) -> None:
    assert r.status_code < 500, (r.request.url, r.status_code, r.text[:300])
    if r.status_code >= 400:
        body = r.json()
        assert body["message_zh"] and body["message_en"], body


def test_nasty_values_in_every_items_parameter(client):
    for name in PARAMS:
        for value in NASTY:
            _ok_error(client.get("/ogc/collections/buildings/items", params={name: value}))


def test_random_cql2_text_never_500(client):
    rng = random.Random(20261122)
    atoms = ["height_m", "code", "name", "self_built", "geometry", "id", "nope", "'a'", "'测'", "1", "-2.5", "TRUE", "NULL",
             "=", "<>", "<", ">=", "AND", "OR", "NOT", "LIKE", "IN", "BETWEEN", "IS", "(", ")", ",", "CASEI(", "DATE('2020-01-01')",
             "S_INTERSECTS(", "S_DWITHIN(", "POINT(100.5 25)", "BBOX(100,25,101,26)", "POLYGON((0 0,1 0,1 1,0 0))", "+", "*"]
    for _ in range(150):
        text = " ".join(rng.choice(atoms) for _ in range(rng.randint(1, 12)))
        _ok_error(client.get("/ogc/collections/buildings/items", params={"filter": text}))


def test_random_cql2_json_never_500(client):
    rng = random.Random(7)
    leaves = [{"property": "height_m"}, {"property": "code"}, {"property": "geometry"}, {"property": "x"}, 1, "a", True, None,
              [1, 2], {"bbox": [1, 2, 3, 4]}, {"type": "Point", "coordinates": [1, 2]}, {"date": "2020-01-01"},
              {"timestamp": "x"}, {"op": 5}, {}, {"args": []}]
    ops = ["and", "or", "not", "=", "<", "like", "in", "between", "isNull", "s_intersects", "s_within", "s_dwithin", "casei", "x"]

    def tree(depth: int):
        if depth == 0 or rng.random() < 0.3:
            return rng.choice(leaves)
        return {"op": rng.choice(ops), "args": [tree(depth - 1) for _ in range(rng.randint(0, 3))]}

    for _ in range(150):
        _ok_error(client.get("/ogc/collections/buildings/items",
                             params={"filter": json.dumps(tree(4)), "filter-lang": "cql2-json"}))
    deep = "[" * 100_000 + "]" * 100_000
    _ok_error(client.get("/ogc/collections/buildings/items", params={"filter": deep[:15_000], "filter-lang": "cql2-json"}))
    _ok_error(client.get("/ogc/collections/buildings/items", params={"filter": "NOT " * 3000 + "self_built"}))
    _ok_error(client.get("/ogc/collections/buildings/items", params={"filter": "(" * 3000 + "self_built" + ")" * 3000}))


def test_nasty_query_bodies_never_500(client):
    rng = random.Random(3)
    values = [None, 0, -1, 1e308, float("nan"), "x", "", [], {}, [1], [[1, 2]], {"type": "Point"},
              {"type": "Point", "coordinates": [float("nan"), 1]}, {"type": "LineString", "coordinates": [[1, 2]]},
              {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 1], [1, 0], [0, 0]]]}, ["buildings"], ["nope"], "\x00",
              "EPSG:3857", "EPSG:4545", 10**30]
    fields = {"identify": ["lon", "lat", "tolerance_m", "layers", "limit", "crs"],
              "spatial": ["geometry", "op", "distance_m", "layers", "filter", "limit", "crs"],
              "nearest": ["lon", "lat", "layer", "k", "crs"], "section": ["line", "layers", "samples", "crs"],
              "stats": ["geometry", "admin_code", "crs"]}
    for _ in range(200):
        path = rng.choice(list(fields))
        body = {f: rng.choice(values) for f in rng.sample(fields[path], rng.randint(1, len(fields[path])))}
        r = client.post(f"/api/query/{path}", content=json.dumps(body, allow_nan=True),
                        headers={"content-type": "application/json"})
        _ok_error(r)


def test_self_intersecting_polygon_is_repaired(client, seeded):
    bowtie = {"type": "Polygon", "coordinates": [[[100.5005, 25.004], [100.5035, 25.006], [100.5035, 25.004],
                                                  [100.5005, 25.006], [100.5005, 25.004]]]}
    r = client.post("/api/query/spatial", json={"geometry": bowtie, "layers": ["buildings"]})
    assert r.status_code == 200
    r = client.post("/api/query/stats", json={"geometry": bowtie})
    assert r.status_code == 200 and r.json()["area_m2"] > 0


def test_sql_text_depends_only_on_the_request_shape():
    spec = load_catalog().get("buildings")
    a = lf.ItemsRequest(spec=spec, limit=10, bbox=(100.0, 25.0, 100.1, 25.1), equals={"use_code": "ZZ"},
                        filter="height_m > 3")
    b = lf.ItemsRequest(spec=spec, limit=500, offset=20, bbox=(111.0, 29.0, 111.5, 29.5), equals={"use_code": "JY"},
                        filter="height_m > 99")
    (sql_a, args_a), (sql_b, args_b) = lf.items_sql(a), lf.items_sql(b)
    assert sql_a == sql_b and args_a != args_b
    assert "ZZ" not in sql_a and "100.1" not in sql_a


def test_number_matched_estimate_above_the_cap():
    spec = load_catalog().get("buildings")
    req = lf.ItemsRequest(spec=spec, bbox=(0.0, 0.0, 5.0, 10.0))
    from layers.items import number_matched as _number_matched
    stats = {"rows": 1_000_000, "bbox": [0.0, 0.0, 10.0, 10.0]}
    assert _number_matched(req, 17, stats) == 17  # exact below the cap
    assert _number_matched(req, lf.EXACT_COUNT_CAP, stats) == 500_000  # half the extent
    req.bbox = (20.0, 20.0, 21.0, 21.0)
    assert _number_matched(req, lf.EXACT_COUNT_CAP, stats) == lf.EXACT_COUNT_CAP  # never below the cap


@pytest.mark.parametrize("filter_text", [None, "S_INTERSECTS(geometry, BBOX(100.50, 25.00, 100.51, 25.01))"])
def test_bbox_and_spatial_filters_use_the_gist_index(db_url, seeded, filter_text):
    """The filter is an index condition on the untransformed column, whatever the output CRS."""
    spec = load_catalog().get("streetlights")
    req = lf.ItemsRequest(spec=spec, limit=100, bbox=None if filter_text else (100.5, 25.0, 100.51, 25.01),
                          filter=filter_text, crs=lf.parse_crs("http://www.opengis.net/def/crs/EPSG/0/4545"))
    params = Params()
    where = lf.where_clause(req, params)

    async def plan() -> str:
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute("SET enable_seqscan = off")
            rows = await conn.fetch(f"EXPLAIN SELECT t.id FROM cim.streetlight t WHERE {where}", *params.values)
            return "\n".join(r[0] for r in rows)
        finally:
            await conn.close()

    text = aio.run(plan())
    assert "Index Cond: (geom &&" in text and "streetlight_geom_idx" in text, text
    assert "st_transform(t.geom" not in text.lower()


def test_paging_past_the_exact_count_cap(client, db_url):
    """Above EXACT_COUNT_CAP matches numberMatched is an estimate that never undercounts the pages
    seen so far, and the last page states the exact total; next links reach every feature."""
    n = lf.EXACT_COUNT_CAP + 100
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO cim.streetlight (pole_no, county_code, geom) SELECT 'BIG-' || i, '990003', "
                        "ST_SetSRID(ST_MakePoint(101.5 + mod(i, 50) * 1e-4, 26.5 + (i / 50) * 1e-4), 4490) "
                        "FROM generate_series(1, %s) i", (n,))
        conn.commit()
        seen, url = 0, "/ogc/collections/streetlights/items?bbox=101.49,26.49,101.52,26.52&limit=1000"
        while url:
            fc = client.get(url).json()
            seen += fc["numberReturned"]
            nxt = [link["href"] for link in fc["links"] if link["rel"] == "next"]
            assert fc["numberMatched"] >= seen + (1 if nxt else 0)
            url = nxt[0] if nxt else None
        assert seen == n and fc["numberMatched"] == n
    finally:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM cim.streetlight WHERE county_code = '990003'")
        conn.commit()
        conn.close()

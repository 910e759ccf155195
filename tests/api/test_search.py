"""Search, dictionaries, access control and the statement timeout over real HTTP."""

from __future__ import annotations

import threading

import httpx
import psycopg2
import pytest

from tests import aio


def test_search_address_contains(client, seeded):
    out = client.get("/api/search", params={"q": "幸福路", "limit": 20}).json()["results"]
    mine = [r for r in out if r["layer"] == "buildings" and r["id"] in {seeded[f"TB-00{i}"] for i in range(1, 6)}]
    assert len(mine) == 5
    r = next(r for r in mine if r["id"] == seeded["TB-001"])
    assert r["match_field"] == "address" and r["label"] == "测试县幸福路1号（测试大楼1）"
    assert r["layer_title_zh"] == "房屋建筑"
    w, s, e, n = r["bbox"]
    assert (round(w, 6), round(s, 6), round(e, 6), round(n, 6)) == (100.501, 25.005, 100.5012, 25.00518)
    assert w <= r["center"][0] <= e and s <= r["center"][1] <= n


def test_search_prefix_first_case_insensitive(client, seeded):
    out = client.get("/api/search", params={"q": "ld-00", "limit": 5}).json()["results"]
    assert [r["label"].split("（")[0] for r in out] == ["LD-001", "LD-002", "LD-003", "LD-004", "LD-005"]
    assert all(r["layer"] == "streetlights" and r["match_field"] == "pole_no" for r in out)
    out = client.get("/api/search", params={"q": "tys1"}).json()["results"]
    node = [r for r in out if r["id"] == seeded["TYS1"]]
    assert len(node) == 1 and node[0]["layer"] == "drainage_nodes"  # listed once, under the specific layer
    assert any(r["id"] == seeded["TSEG-YS"] and r["match_field"] == "start_exp_no" for r in out)


def test_search_wildcards_are_literal(client, seeded):
    for q in ("%", "_", "\\"):
        out = client.get("/api/search", params={"q": q, "layers": "buildings,streetlights"}).json()["results"]
        assert all(q in r["value"] for r in out), q


def test_search_bad_input(client):
    for params in ({}, {"q": ""}, {"q": " "}, {"q": "x" * 101}, {"q": "a", "limit": 0}, {"q": "a", "limit": "x"},
                   {"q": "a", "limit": 101}):
        r = client.get("/api/search", params=params)
        assert r.status_code == 400, params
        assert r.json()["message_zh"] and r.json()["message_en"]
    assert client.get("/api/search", params={"q": "a", "layers": "nope"}).status_code == 404


def test_dictionaries(client):
    rows = client.get("/api/dictionaries/dict_network").json()
    js = next(r for r in rows if r["code"] == "JS")
    assert js["name_zh"] == "给水" and js["attrs"]["color"] == "0,255,255"
    for bad in ("dict_nope", "building", "dict_network;drop", "pg_class"):
        r = client.get(f"/api/dictionaries/{bad}")
        assert r.status_code == 404 and r.json()["message_en"]


def test_reads_need_a_token_without_public_read(start_server, seeded):
    srv = start_server(CIM_PUBLIC_READ="false")
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        for method, path, body in (("GET", "/ogc/collections", None), ("GET", "/ogc/collections/buildings/items", None),
                                   ("GET", "/api/search?q=a", None),
                                   ("POST", "/api/query/identify", {"lon": 100.5, "lat": 25.0})):
            r = c.request(method, path, json=body)
            assert r.status_code == 401, path
            assert r.json()["message_zh"]


def test_statement_timeout_is_503(start_server, seeded, db_url):
    srv = start_server(CIM_STATEMENT_TIMEOUT_MS="300")
    locker = psycopg2.connect(db_url)
    held = threading.Event()
    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLE cim.streetlight IN ACCESS EXCLUSIVE MODE")  # every read now waits
            held.set()
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                r = c.get("/ogc/collections/streetlights/items")
                assert r.status_code == 503
                assert r.json()["code"] == "query_timeout" and r.json()["message_zh"] and r.json()["message_en"]
                r = c.post("/api/query/nearest", json={"lon": 100.5, "lat": 25.0, "layer": "streetlights"})
                assert r.status_code == 503
    finally:
        locker.rollback()
        locker.close()
    with httpx.Client(base_url=srv.url, timeout=30) as c:  # the server is fine afterwards
        assert c.get("/ogc/collections/streetlights/items").status_code == 200


@pytest.mark.parametrize("path", ["/ogc/collections/nope", "/ogc/collections/nope/items", "/ogc/collections/nope/queryables",
                                  "/ogc/collections/nope/items/1"])
def test_unknown_collection_is_404(client, path):
    r = client.get(path)
    assert r.status_code == 404 and r.json()["message_zh"] and r.json()["message_en"]


_FILL = {  # rows that make the table big enough for the planner to prefer an index (rolled back)
    "buildings": "INSERT INTO cim.building (code, county_code, geom) SELECT 'X' || i, '990002', "
                 "ST_Multi(ST_MakeEnvelope(90 + i * 1e-4, 30, 90 + i * 1e-4 + 5e-5, 30.00005, 4490)) "
                 "FROM generate_series(1, 20000) i",
    "drainage_nodes": "INSERT INTO cim.pipe_point (network, exp_no, county_code, geom) SELECT 'PS', 'X' || i, '990002', "
                      "ST_SetSRID(ST_MakePoint(90 + i * 1e-4, 30), 4490) FROM generate_series(1, 20000) i",
    "pipeline_segments": "INSERT INTO cim.pipe_segment (network, start_exp_no, end_exp_no, county_code, geom) "
                         "SELECT 'JS', 'X' || i, 'Y' || i, '990002', ST_SetSRID(ST_MakeLine(ST_MakePoint(90 + i * 1e-4, 30), "
                         "ST_MakePoint(90 + i * 1e-4, 30.0001)), 4490) FROM generate_series(1, 20000) i",
    "streetlights": "INSERT INTO cim.streetlight (pole_no, county_code, geom) SELECT 'X' || i, '990002', "
                    "ST_SetSRID(ST_MakePoint(90 + i * 1e-4, 30), 4490) FROM generate_series(1, 20000) i",
}


@pytest.mark.parametrize("layer,index", [("buildings", "building_search_trgm_idx"),
                                         ("drainage_nodes", "pipe_point_search_trgm_idx"),
                                         ("pipeline_segments", "pipe_segment_search_trgm_idx"),
                                         ("streetlights", "streetlight_search_trgm_idx")])
def test_search_uses_the_trigram_index(db_url, seeded, layer, index):
    """The builder's search text is the migration's index expression (0020_search_trgm.sql)."""

    import asyncpg

    from layers import query as lq
    from layers.catalog import load_catalog

    spec = load_catalog().get(layer)
    sql, args = lq.search_sql([spec], "X123", 20)

    async def plan() -> str:
        conn = await asyncpg.connect(db_url)
        tr = conn.transaction()
        await tr.start()
        try:
            await conn.execute(_FILL[layer])
            await conn.execute(f"ANALYZE {spec.table}")
            return "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))
        finally:
            await tr.rollback()
            await conn.close()

    text = aio.run(plan())
    assert index in text, text

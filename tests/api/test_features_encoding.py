"""Content coding of OGC API – Features items pages over real HTTP (api/encoding.py).

An items page is gzip-encoded once, in the route, when ``Accept-Encoding`` admits gzip, and
decodes to the very bytes the uncompressed answer carries; without gzip in the header (or with
``gzip;q=0``) the body is plain GeoJSON. Raw bytes are read with ``http.client``, which neither
adds an ``Accept-Encoding`` header nor decodes the body.
"""

from __future__ import annotations

import gzip
import http.client
import json
import re
from urllib.parse import urlencode, urlsplit

import psycopg2
import pytest

from api.encoding import THREAD_MIN_SIZE, accepts_gzip

ITEMS = "/ogc/collections/streetlights/items?" + urlencode({"bbox": "100.49,24.99,100.52,25.02", "limit": 12})
BIG_COUNTY = "990002"  # a block of buildings of its own, west of the test county, removed afterwards
BIG_BBOX = "100.40,24.90,100.46,24.96"


def _get(base: str, path: str, accept_encoding: str | None, method: str = "GET") -> tuple[int, dict, bytes]:
    """Status, lower-cased headers and the raw (still encoded) body of one request."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        headers = {} if accept_encoding is None else {"Accept-Encoding": accept_encoding}
        conn.request(method, path, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def _no_stamp(body: bytes) -> bytes:
    """The answer with its ``timeStamp`` value blanked (it names the second the page was made)."""
    return re.sub(rb'"timeStamp":"[^"]*"', b'"timeStamp":""', body, count=1)


def test_gzip_when_accepted_decodes_to_the_plain_answer(server, seeded):
    status, plain_headers, plain = _get(server, ITEMS, None)
    assert status == 200 and "content-encoding" not in plain_headers
    assert plain_headers["content-type"].startswith("application/geo+json")
    fc = json.loads(plain)
    assert fc["type"] == "FeatureCollection" and fc["numberReturned"] == 12 and len(plain) > 1024

    status, headers, body = _get(server, ITEMS, "gzip")
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert "accept-encoding" in headers["vary"].lower()
    assert headers["content-type"].startswith("application/geo+json")
    assert headers["content-crs"] == "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"
    assert body[:2] == b"\x1f\x8b" and int(headers["content-length"]) == len(body) < len(plain)
    decoded = gzip.decompress(body)
    assert _no_stamp(decoded) == _no_stamp(plain)  # byte for byte, the time stamp aside
    assert json.loads(decoded)["features"] == fc["features"]


@pytest.mark.parametrize("header", [None, "identity", "br", "gzip;q=0", "gzip;q=0, identity", "*;q=0",
                                    "gzip;q=0, *"])
def test_no_gzip_unless_accepted(server, seeded, header):
    status, headers, body = _get(server, ITEMS, header)
    assert status == 200 and "content-encoding" not in headers
    assert json.loads(body)["numberReturned"] == 12 and int(headers["content-length"]) == len(body)


@pytest.mark.parametrize("header", ["gzip", "GZIP", "deflate, gzip;q=0.5", "x-gzip", "*", "br;q=1.0, gzip;q=0.8"])
def test_gzip_for_every_way_of_accepting_it(server, seeded, header):
    status, headers, body = _get(server, ITEMS, header)
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(body))["numberReturned"] == 12


def test_head_has_the_headers_of_the_gzip_answer(server, seeded):
    status, headers, body = _get(server, ITEMS, "gzip", method="HEAD")
    assert status == 200 and body == b""
    assert headers["content-encoding"] == "gzip" and int(headers["content-length"]) > 0


def test_small_and_html_answers(server, seeded):
    # below 1 KiB an answer is sent as it is
    path = "/ogc/collections/streetlights/items?" + urlencode({"bbox": "100.49,24.99,100.52,25.02", "limit": 1,
                                                                "properties": "pole_no"})
    status, headers, body = _get(server, path, "gzip")
    assert status == 200 and len(body) < 1024 and "content-encoding" not in headers
    assert json.loads(body)["numberReturned"] == 1
    # the HTML view of a page is compressed by the application's middleware
    status, headers, body = _get(server, ITEMS + "&f=html", "gzip")
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert gzip.decompress(body).startswith(b"<!doctype html>")


def test_the_middleware_honours_q_zero_on_other_routes(server):
    status, headers, body = _get(server, "/ogc/collections", "gzip")
    assert status == 200 and headers["content-encoding"] == "gzip" and json.loads(gzip.decompress(body))
    status, headers, body = _get(server, "/ogc/collections", "gzip;q=0")
    assert status == 200 and "content-encoding" not in headers and json.loads(body)["collections"]


@pytest.fixture
def big_block(db_url, seeded):
    """2 500 buildings with every attribute, so one page of them exceeds a megabyte of GeoJSON."""
    conn = psycopg2.connect(db_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DELETE FROM cim.building WHERE county_code = %s", (BIG_COUNTY,))
        cur.execute("""
            INSERT INTO cim.building (code, name, address, floors_above, floors_below, height_m, building_area_m2,
                                      structure_type, build_year, use_code, appraisal_grade, self_built,
                                      county_code, geom)
            SELECT 'BB-' || i, '测试大楼' || i, '测试县测试路' || i || '号', 1 + i %% 30, i %% 3, 3.0 * (1 + i %% 30),
                   200.5 + i %% 500, '砖混', 1980 + i %% 40, 'ZZ', 'B', i %% 2 = 0, %s,
                   ST_Multi(ST_MakeEnvelope(100.41 + (i %% 50) * 0.0002, 24.91 + (i / 50) * 0.0002,
                                            100.41 + (i %% 50) * 0.0002 + 0.00012,
                                            24.91 + (i / 50) * 0.0002 + 0.0001, 4490))
            FROM generate_series(0, 2499) i""", (BIG_COUNTY,))
    try:
        yield 2500
    finally:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM cim.building WHERE county_code = %s", (BIG_COUNTY,))
        conn.close()


def test_a_page_over_a_megabyte_is_compressed_the_same_way(server, big_block):
    path = "/ogc/collections/buildings/items?" + urlencode({"bbox": BIG_BBOX, "limit": big_block})
    _, plain_headers, plain = _get(server, path, None)
    assert len(plain) > THREAD_MIN_SIZE and "content-encoding" not in plain_headers
    status, headers, body = _get(server, path, "gzip")
    assert status == 200 and headers["content-encoding"] == "gzip" and len(body) < len(plain) // 4
    decoded = gzip.decompress(body)
    assert _no_stamp(decoded) == _no_stamp(plain)
    fc = json.loads(decoded)
    assert fc["numberReturned"] == big_block and fc["features"][0]["properties"]["code"].startswith("BB-")


def test_accepts_gzip_reads_q_values():
    assert accepts_gzip("gzip") and accepts_gzip("gzip, deflate, br") and accepts_gzip("*")
    assert accepts_gzip("gzip;q=0.001") and accepts_gzip("x-gzip") and accepts_gzip(" GZip ; Q=1 ")
    assert not accepts_gzip(None) and not accepts_gzip("") and not accepts_gzip("identity")
    assert not accepts_gzip("gzip;q=0") and not accepts_gzip("gzip;q=0.000") and not accepts_gzip("*;q=0")
    assert not accepts_gzip("gzip;q=0, *") and not accepts_gzip("gzip;q=abc") and not accepts_gzip("br, deflate")

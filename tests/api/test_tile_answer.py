"""The one tile answer (api.tile_answer), called directly: the same rules for every tile family.

The HTTP side is covered per family (tests/tiles for vector tiles and PMTiles, tests/tiles3d for
3D Tiles and hillshade); here the decisions themselves: 304 by ETag before any work, 204 for an
empty body, gzip bodies sent as stored or inflated, and the headers a 304 shares with its 200.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from isal import igzip

from api import tile_answer as ta
from tiles.cache import make_entry

MVT = ta.TileKind.public(ta.MVT, 60, gzip_bodies=True)
GLB = ta.TileKind.revalidate("model/gltf-binary")
TILESET = ta.TileKind.revalidate("application/json")
ETAG = '"abc123"'


def _answer(kind, headers, body):
    """Run :func:`tile_answer.answer`; returns the answer and how often the body was made."""
    made = []

    async def produce():
        made.append(1)
        return body

    return asyncio.run(ta.answer(kind, ETAG, headers, produce)), len(made)


@pytest.mark.parametrize("kind", [MVT, GLB, TILESET], ids=["mvt", "glb", "tileset"])
@pytest.mark.parametrize("inm,hit", [(ETAG, True), (f'"other", {ETAG}', True), (f'"x",{ETAG} ', True), ("*", True),
                                     ('W/"abc123"', True), ('"other"', False), ('"abc12"', False), ("", False),
                                     (None, False)])
def test_the_same_etag_rule_for_every_family(kind, inm, hit):
    headers = {"accept-encoding": "gzip"} | ({"if-none-match": inm} if inm is not None else {})
    body = make_entry(b"tile bytes", ETAG).gz if kind.gzip_bodies else b"tile bytes"
    a, made = _answer(kind, headers, body)
    if hit:
        # 304 before any work, with the validators and caching headers of the 200
        full, _ = _answer(kind, {"accept-encoding": "gzip"}, body)
        assert (a.status, a.body, made) == (304, b"", 0)
        assert a.headers == {k: v for k, v in full.headers.items() if k not in ("Content-Type", "Content-Encoding")}
    else:
        assert a.status == 200 and made == 1 and a.headers["ETag"] == ETAG


def test_headers_by_family():
    mvt, _ = _answer(MVT, {"accept-encoding": "gzip, br"}, make_entry(b"x" * 100, ETAG).gz)
    assert mvt.headers == {"ETag": ETAG, "Cache-Control": "public, max-age=60", "Vary": "Accept-Encoding",
                           "Content-Type": ta.MVT, "Content-Encoding": "gzip"}
    glb, _ = _answer(GLB, {"accept-encoding": "gzip"}, b"glTF")
    assert glb.headers == {"ETag": ETAG, "Cache-Control": "no-cache", "Content-Type": "model/gltf-binary"}


def test_gzip_bodies_are_sent_as_stored_or_inflated():
    raw = b"\x1a\x05layer" * 50
    gz = make_entry(raw, ETAG).gz
    sent, _ = _answer(MVT, {"accept-encoding": "gzip"}, gz)
    assert sent.body == gz and igzip.decompress(sent.body) == raw
    plain, _ = _answer(MVT, {"accept-encoding": "identity"}, gz)
    assert plain.body == raw and "Content-Encoding" not in plain.headers and plain.headers["Vary"] == "Accept-Encoding"
    nothing, _ = _answer(MVT, {}, gz)
    assert nothing.body == raw


@pytest.mark.parametrize("empty", [b"", None])
def test_an_empty_tile_is_204_with_validators(empty):
    a, made = _answer(MVT, {"accept-encoding": "gzip"}, empty)
    assert (a.status, a.body, made) == (204, b"", 1)
    assert a.headers == {"ETag": ETAG, "Cache-Control": "public, max-age=60", "Vary": "Accept-Encoding"}


def test_files_are_streamed_by_the_route_and_refused_by_the_adapter(tmp_path):
    path = tmp_path / "tileset.json"
    path.write_text("{}")
    a, _ = _answer(TILESET, {}, path)
    assert a.status == 200 and isinstance(a.body, Path)
    r = ta.response(a)
    assert r.headers["etag"] == ETAG and r.headers["cache-control"] == "no-cache" and r.media_type == "application/json"
    with pytest.raises(TypeError):
        asyncio.run(ta.send(a, _collect([])))


def _collect(messages):
    async def send(message):
        messages.append(message)

    return send


def test_route_and_adapter_send_the_same_answer():
    a, _ = _answer(MVT, {"accept-encoding": "gzip"}, make_entry(b"y" * 300, ETAG).gz)
    messages: list[dict] = []
    asyncio.run(ta.send(a, _collect(messages)))
    start, body = messages
    r = ta.response(a)
    assert start["status"] == r.status_code == 200 and body["body"] == r.body == a.body
    assert sorted(start["headers"]) == sorted(r.raw_headers)
    messages.clear()
    asyncio.run(ta.send(ta.Answer(304, MVT.headers(ETAG)), _collect(messages)))
    assert messages[0]["status"] == 304 and b"content-length" not in dict(messages[0]["headers"])

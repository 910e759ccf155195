"""The one place that turns a tile into an HTTP answer: vector tiles, PMTiles, 3D Tiles, hillshade.

Every tile family answers by the same rules (RFC 9110 conditional requests):

- the ETag is known before the tile is made (it is derived from the data versions or the file),
  so a request whose ``If-None-Match`` names it is answered ``304`` without rendering or reading;
- ``304``, ``204`` and ``200`` carry the same validators and caching headers (``ETag``,
  ``Cache-Control`` and, where the body may be gzip-encoded, ``Vary: Accept-Encoding``);
- an empty tile is ``204 No Content`` (a family that never has empty tiles simply never
  produces an empty body);
- a body stored gzip-compressed (vector tiles, PMTiles archives) is sent as is with
  ``Content-Encoding: gzip`` to clients that accept gzip, and inflated for those that do not.

:func:`answer` decides; :func:`response` hands the decision to a framework route and
:func:`send` to a raw ASGI ``send`` (the tile adapter in :mod:`api.routers.tiles`), so the two
paths cannot disagree on status, headers or bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Response
from fastapi.responses import FileResponse

from tiles.cache import gunzip

MVT = "application/vnd.mapbox-vector-tile"


@dataclass(frozen=True)
class TileKind:
    """What differs between tile families: media type, cache policy, whether bodies are gzip-encoded."""

    media_type: str
    cache_control: str
    gzip_bodies: bool = False

    @classmethod
    def public(cls, media_type: str, max_age_s: int, *, gzip_bodies: bool = False) -> TileKind:
        """Shared caches may keep the tile ``max_age_s`` seconds, then revalidate by ETag."""
        return cls(media_type, f"public, max-age={int(max_age_s)}", gzip_bodies)

    @classmethod
    def revalidate(cls, media_type: str) -> TileKind:
        """Clients revalidate every time (the data version is in the ETag; a 304 costs nothing)."""
        return cls(media_type, "no-cache")

    def headers(self, etag: str) -> dict[str, str]:
        """Validator and caching headers common to 200, 204 and 304."""
        out = {"ETag": etag, "Cache-Control": self.cache_control}
        if self.gzip_bodies:
            out["Vary"] = "Accept-Encoding"
        return out


@dataclass(frozen=True)
class Answer:
    """Status, headers and body of a tile answer (the body is bytes, or a file to stream)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Path = b""


def etag_matches(etag: str, if_none_match: str | None) -> bool:
    """True when ``If-None-Match`` names ``etag`` or is ``*``.

    Weak comparison, as RFC 9110 §13.1.2 requires for If-None-Match: ``W/"x"`` matches ``"x"``
    (a proxy that compresses a response may weaken its ETag).
    """
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return etag.removeprefix("W/") in tags or "*" in tags


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True when ``Accept-Encoding`` lists gzip."""
    return "gzip" in (accept_encoding or "")


def content(kind: TileKind, etag: str, body: bytes | Path | None, accept_gzip: bool) -> Answer:
    """``200`` with the body (gzip or inflated as the client accepts), or ``204`` when it is empty."""
    headers = kind.headers(etag)
    if body is None or body == b"":
        return Answer(204, headers)
    headers["Content-Type"] = kind.media_type
    if kind.gzip_bodies and isinstance(body, bytes):
        if not accept_gzip:
            return Answer(200, headers, gunzip(body))
        headers["Content-Encoding"] = "gzip"
    return Answer(200, headers, body)


async def answer(kind: TileKind, etag: str, request_headers: Mapping[str, str],
                 body: Callable[[], Awaitable[bytes | Path | None]]) -> Answer:
    """``304`` when the client holds ``etag``; else the tile that ``body()`` makes (200 / 204)."""
    if etag_matches(etag, request_headers.get("if-none-match")):
        return Answer(304, kind.headers(etag))
    return content(kind, etag, await body(), accepts_gzip(request_headers.get("accept-encoding")))


def response(a: Answer) -> Response:
    """The answer as a framework response (files are streamed, with ``Range`` support)."""
    headers = dict(a.headers)
    media_type = headers.pop("Content-Type", None)
    if isinstance(a.body, Path):
        return FileResponse(a.body, media_type=media_type, headers=headers)
    return Response(a.body, status_code=a.status, media_type=media_type, headers=headers)


async def send(a: Answer, send_message: Callable[[dict], Awaitable[None]]) -> None:
    """Send the answer on a raw ASGI connection (bytes bodies only)."""
    if not isinstance(a.body, bytes):
        raise TypeError("the ASGI adapter sends rendered tiles only, not files")
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in a.headers.items()]
    if a.body:
        raw.append((b"content-length", str(len(a.body)).encode()))
    await send_message({"type": "http.response.start", "status": a.status, "headers": raw})
    await send_message({"type": "http.response.body", "body": a.body})

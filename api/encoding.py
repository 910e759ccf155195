"""gzip content coding for large answers, done once in the route with ISA-L.

The application-wide ``GZipMiddleware`` compresses every JSON answer with zlib level 5 after the
route has built it; for the GeoJSON pages of ``/ogc/collections/{id}/items`` (50 KB for 100
buildings, megabytes at the page maximum) that is the largest single cost of the request in the
server process. :func:`gzip_response` compresses such a body once, with ISA-L's deflate
(``python-isal``, as the tile cache does), and marks it ``Content-Encoding: gzip`` so the
middleware passes it through untouched. For a 54 KB items page ISA-L level 2 takes ~0.06 ms
where zlib level 5 takes ~0.5 ms, for an answer ~20 % larger (5.5 KB instead of 4.5 KB); any
gzip reader inflates it. Bodies of a megabyte and more are compressed on a worker thread
(ISA-L releases the GIL), so one page of 10 000 features does not hold up the other requests.
"""

from __future__ import annotations

import asyncio

from fastapi import Request
from fastapi.middleware.gzip import GZipMiddleware as _StarletteGZip
from fastapi.responses import Response
from isal import igzip

GZIP_LEVEL = 2          # ISA-L levels are 0–3; 1 and 2 give the same size on GeoJSON, 3 is 5× slower
MIN_SIZE = 1024         # smaller answers gain little and are sent as they are (as the middleware does)
THREAD_MIN_SIZE = 1 << 20


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True when ``Accept-Encoding`` admits gzip (RFC 9110 §12.5.3).

    ``gzip`` / ``x-gzip`` with a non-zero ``q`` admit it, so does ``*`` unless gzip itself is
    listed with ``q=0``; no header means no content coding is asked for.
    """
    q_gzip = q_any = None
    for part in (accept_encoding or "").split(","):
        coding, *params = part.split(";")
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip"):
            q_gzip = q if q_gzip is None else max(q_gzip, q)
        elif coding == "*":
            q_any = q
    q = q_gzip if q_gzip is not None else q_any
    return q is not None and q > 0


def _gzip(body: bytes) -> bytes:
    return igzip.compress(body, GZIP_LEVEL, mtime=0)


async def gzip_response(request: Request, body: bytes, media_type: str, headers: dict[str, str]) -> Response:
    """``body`` as a response, gzip-encoded (with ``Vary: Accept-Encoding``) when the client accepts it.

    An answer left as it is passes through :class:`GZipMiddleware`, which adds the ``Vary``
    header to it as to every other answer of its size; a HEAD request gets the same headers
    (``Content-Length`` of the encoded body) without the body.
    """
    if len(body) >= MIN_SIZE and accepts_gzip(request.headers.get("accept-encoding")):
        body = await asyncio.to_thread(_gzip, body) if len(body) >= THREAD_MIN_SIZE else _gzip(body)
        headers = dict(headers, Vary="Accept-Encoding")
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=media_type, headers=headers)


class GZipMiddleware(_StarletteGZip):
    """Starlette's gzip middleware, deciding by the q-values of ``Accept-Encoding``.

    Starlette's own check is a substring test, so ``gzip;q=0`` (gzip refused) would still get
    gzip. A request that does not admit gzip reaches the application without the header, so the
    middleware and every route below it answer it uncompressed; answers a route has encoded
    already (``Content-Encoding`` set) pass through.
    """

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            value = next((v for k, v in scope["headers"] if k == b"accept-encoding"), None)
            if value is not None and not accepts_gzip(value.decode("latin-1")):
                scope = dict(scope, headers=[(k, v) for k, v in scope["headers"] if k != b"accept-encoding"])
        await super().__call__(scope, receive, send)

"""Request dependencies shared by every router: database, catalogue, caller, access check.

Every endpoint declares its access need with ``Depends(require(Action.x))``; the decision
itself is :func:`cim.auth.authorize`, the single check of the platform. Tokens come in the
``Authorization: Bearer …`` header (or ``X-API-Key``). Verified tokens are remembered for a
short time so tile traffic does not write ``last_used_at`` on every request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
from fastapi import Depends, Request

from cim import auth
from cim.auth import Action, Principal
from cim.settings import Settings
from layers.catalog import Catalog

TOKEN_TTL_S = 30.0


def settings(request: Request) -> Settings:
    """Settings the app was created with."""
    return request.app.state.settings


def catalog(request: Request) -> Catalog:
    """The layer catalogue loaded at start-up."""
    return request.app.state.catalog


def pool(request: Request) -> asyncpg.Pool:
    """The asyncpg pool (statement timeout set on every connection)."""
    return request.app.state.pool


def token_from(headers: Mapping[str, str]) -> str | None:
    """The caller's token: ``Authorization: Bearer …``, else ``X-API-Key``; None without one.

    The one token parser of the API: the ``principal`` dependency and the tile adapter
    (:class:`api.routers.tiles.TileFastPath`) both read the token here. ``headers`` maps
    lower-case names to values (Starlette's headers, or a dict built from ASGI headers).
    """
    header = headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return headers.get("x-api-key") or None


async def principal_of(state: Any, token: str | None) -> Principal:
    """Who holds ``token`` (anonymous for None); :class:`Unauthenticated` for an unknown token.

    A verified token is remembered for :data:`TOKEN_TTL_S` in ``state.token_cache``, so map
    traffic does not verify (and stamp ``last_used_at``) on every tile.
    """
    if not token:
        return auth.ANONYMOUS
    cache: dict[str, tuple[float, Principal]] = state.token_cache
    hit = cache.get(token)
    now = time.monotonic()
    if hit and now - hit[0] < TOKEN_TTL_S:
        return hit[1]
    async with state.pool.acquire() as conn:
        who = await auth.authenticate_async(conn, token)
    if len(cache) > 10_000:
        cache.clear()
    cache[token] = (now, who)
    return who


async def principal(request: Request) -> Principal:
    """Who is calling (anonymous without a token)."""
    return await principal_of(request.app.state, token_from(request.headers))


def require(action: Action, county_param: str | None = None) -> Callable:
    """Dependency factory: the caller must be allowed ``action`` (for a county, if named).

    ``county_param`` names a path or query parameter holding the county code; writes that learn
    their county later (e.g. from a form field) call :func:`check` themselves.
    """

    async def dep(request: Request, who: Principal = Depends(principal)) -> Principal:
        county = None
        if county_param:
            county = request.path_params.get(county_param) or request.query_params.get(county_param)
        check(request, who, action, county)
        return who

    return dep


def check(request: Request, who: Principal, action: Action, county: str | None = None) -> None:
    """Run the shared access check with the app's public-read setting."""
    allow(request.app.state, who, action, county)


def allow(state: Any, who: Principal, action: Action, county: str | None = None) -> None:
    """:func:`cim.auth.authorize` with the public-read setting of the app whose ``state`` this is."""
    auth.authorize(who, action, county=county, public_read=state.settings.auth.public_read)


def client_addr(request: Request) -> str | None:
    """Remote address for the audit log."""
    return request.client.host if request.client else None

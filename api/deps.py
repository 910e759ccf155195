"""Request dependencies shared by every router: database, catalogue, caller, access check.

Every endpoint declares its access need with ``Depends(require(Action.x))``; the decision
itself is :func:`cim.auth.authorize`, the single check of the platform. Tokens come in the
``Authorization: Bearer …`` header (or ``X-API-Key``). Verified tokens are remembered for a
short time so tile traffic does not write ``last_used_at`` on every request.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

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


async def connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for the duration of a request."""
    async with request.app.state.pool.acquire() as conn:
        yield conn


def _token_from(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.headers.get("x-api-key") or None


async def principal(request: Request) -> Principal:
    """Who is calling (anonymous without a token)."""
    token = _token_from(request)
    if not token:
        return auth.ANONYMOUS
    cache: dict[str, tuple[float, Principal]] = request.app.state.token_cache
    hit = cache.get(token)
    now = time.monotonic()
    if hit and now - hit[0] < TOKEN_TTL_S:
        return hit[1]
    async with request.app.state.pool.acquire() as conn:
        who = await auth.authenticate_async(conn, token)
    if len(cache) > 10_000:
        cache.clear()
    cache[token] = (now, who)
    return who


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


def require_role(*actions: Action) -> Callable:
    """Dependency factory: the caller's role may do one of ``actions`` somewhere; the county
    check follows where the county becomes known (e.g. from the ledger entry acted on)."""

    async def dep(request: Request, who: Principal = Depends(principal)) -> Principal:
        auth.authorize_role(who, actions, public_read=request.app.state.settings.auth.public_read)
        return who

    return dep


def check(request: Request, who: Principal, action: Action, county: str | None = None) -> None:
    """Run the shared access check with the app's public-read setting."""
    auth.authorize(who, action, county=county, public_read=request.app.state.settings.auth.public_read)


def client_addr(request: Request) -> str | None:
    """Remote address for the audit log."""
    return request.client.host if request.client else None

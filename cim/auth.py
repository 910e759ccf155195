"""Access control: API tokens, roles, the one authorisation check, and the audit log.

Tokens are 32 random bytes shown once (``cim_<prefix>_<secret>``); only their SHA-256 digest
is stored. A digest is enough for high-entropy secrets (no dictionary attack applies) and keeps
the per-request check to one indexed lookup.

Roles:
- ``viewer`` reads layers, features and tiles;
- ``client`` is a machine account: reads and calls the query endpoints;
- ``uploader`` reads and writes (ingest) only for its county codes;
- ``inspector`` (county hazard staff) registers hazards and reports rectification progress
  (``report``) in its counties;
- ``supervisor`` (county supervising department) also accepts, closes and dismisses hazard
  entries and runs scans (``accept``) and puts entries under county supervision (``oversee``);
- ``city`` and ``province`` put entries under supervision (挂牌督办, ``oversee``) in the counties
  their codes cover (a city code ``xxxx00`` covers its counties, a province code ``xx0000`` its
  cities' counties);
- ``admin`` does everything.
Which hazard transition needs which action, and which supervision level each role may set, is
the ledger's matrix (``cimplus/hazards/ledger.yaml``, docs/hazards.md).
Anonymous reads are allowed only when ``CIM_PUBLIC_READ=true``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

import psycopg2.extensions

from cim.errors import Forbidden, InvalidInput, NotFound, Unauthenticated

if TYPE_CHECKING:
    from cim.dbcall import AsyncConn


class Role(str, Enum):
    """Token roles."""

    admin = "admin"
    uploader = "uploader"
    viewer = "viewer"
    client = "client"
    inspector = "inspector"
    supervisor = "supervisor"
    city = "city"
    province = "province"


class Action(str, Enum):
    """What a request wants to do."""

    read = "read"      # layers, features, tiles, 3D tiles, styles
    query = "query"    # /api/query/* spatial queries
    write = "write"    # ingest, restore, confirm: needs a county
    admin = "admin"    # tokens, everything else
    report = "report"  # hazard ledger: register, report rectification progress (needs a county)
    accept = "accept"  # hazard ledger: accept / close / dismiss, run scans (needs a county)
    oversee = "oversee"  # hazard ledger: 挂牌督办 supervision (needs a county)


_ALLOWED: dict[Role, set[Action]] = {
    Role.viewer: {Action.read, Action.query},
    Role.client: {Action.read, Action.query},
    Role.uploader: {Action.read, Action.query, Action.write},
    Role.inspector: {Action.read, Action.query, Action.report},
    Role.supervisor: {Action.read, Action.query, Action.report, Action.accept, Action.oversee},
    Role.city: {Action.read, Action.query, Action.oversee},
    Role.province: {Action.read, Action.query, Action.oversee},
    Role.admin: set(Action),
}

#: Actions that act on one county's data: the caller's codes must cover it (admin excepted).
COUNTY_ACTIONS = frozenset({Action.write, Action.report, Action.accept, Action.oversee})

#: Roles whose codes must be given when their token is made.
SCOPED_ROLES = frozenset({Role.uploader, Role.inspector, Role.supervisor, Role.city, Role.province})


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's identity or the anonymous reader."""

    name: str
    role: Role | None
    token_id: int | None = None
    counties: frozenset[str] = field(default_factory=frozenset)

    @property
    def anonymous(self) -> bool:
        """True for requests without a token."""
        return self.token_id is None


ANONYMOUS = Principal(name="anonymous", role=None)


def authorize(principal: Principal, action: Action, *, county: str | None = None,
              public_read: bool = False) -> None:
    """The single access check every endpoint and command goes through.

    Raises :class:`Unauthenticated` when a token is needed and missing, :class:`Forbidden`
    when the role or the county scope does not allow the action.
    """
    if principal.role is None:
        if public_read and action in (Action.read, Action.query):
            return
        raise Unauthenticated("需要有效的访问令牌", "a valid API token is required")
    if action not in _ALLOWED[principal.role]:
        raise Forbidden(f"角色 {principal.role.value} 无权执行 {action.value}",
                        f"role {principal.role.value} may not {action.value}")
    if action is Action.write and principal.role is Role.uploader:
        if county is None:
            raise Forbidden("上传需要指定县级行政区代码", "an upload must name its county code")
        if county not in principal.counties:
            raise Forbidden(f"令牌无权写入行政区 {county}", f"token may not write county {county}")
    elif action in COUNTY_ACTIONS and principal.role is not Role.admin:
        if county is None:
            raise Forbidden("该操作需要指定县级行政区代码", f"{action.value} must name its county code")
        if not covers(principal.counties, county):
            raise Forbidden(f"令牌无权处理行政区 {county} 的事项", f"token may not {action.value} in county {county}")


def authorize_role(principal: Principal, actions: tuple[Action, ...], *, public_read: bool = False) -> None:
    """The role part of :func:`authorize`: the caller's role may do one of ``actions`` in some
    county. For requests whose county is known only once the object they act on is read (a
    ledger entry); the module that reads it then calls :func:`authorize` with that county."""
    if principal.role is None:
        if public_read and all(a in (Action.read, Action.query) for a in actions):
            return
        raise Unauthenticated("需要有效的访问令牌", "a valid API token is required")
    if not any(a in _ALLOWED[principal.role] for a in actions):
        names = "/".join(a.value for a in actions)
        raise Forbidden(f"角色 {principal.role.value} 无权执行 {names}", f"role {principal.role.value} may not {names}")


def covers(codes: frozenset[str] | set[str], county: str) -> bool:
    """Whether administrative codes cover a county: the county itself, its city (``xxxx00``) or
    its province (``xx0000``) (GB/T 2260: 2 digits province, 4 city, 6 county)."""
    for code in codes:
        if code == county:
            return True
        if len(code) == 6 and len(county) >= 6:
            if code.endswith("0000") and county[:2] == code[:2]:
                return True
            if code.endswith("00") and county[:4] == code[:4]:
                return True
    return False


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class NewToken:
    """A freshly created token; ``secret`` is shown once and never stored."""

    id: int
    name: str
    role: Role
    secret: str


def create_token(cur: psycopg2.extensions.cursor, *, name: str, role: Role, counties: list[str] | None = None,
                 expires_days: int | None = None) -> NewToken:
    """Create a token; only its digest is written."""
    counties = sorted(set(counties or []))
    for c in counties:
        if not (c.isdigit() and len(c) in (6, 9, 12)):
            raise InvalidInput(f"行政区代码不合法：{c}", f"invalid county code: {c}")
    if role is Role.uploader and not counties:
        raise InvalidInput("上传员令牌必须至少指定一个县级代码（--county）",
                           "an uploader token needs at least one --county")
    if role in SCOPED_ROLES and not counties:
        raise InvalidInput(f"{role.value} 令牌必须至少指定一个行政区代码（--county）",
                           f"a {role.value} token needs at least one --county (county, city or province code)")
    prefix = secrets.token_hex(4)
    secret = f"cim_{prefix}_{secrets.token_urlsafe(32)}"
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=expires_days)) if expires_days else None
    cur.execute(
        "INSERT INTO cim.api_token (name, role, counties, token_prefix, token_hash, expires_at) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (name, role.value, counties, prefix, psycopg2.Binary(_digest(secret)), expires),
    )
    row = cur.fetchone()
    assert row is not None  # INSERT ... RETURNING
    return NewToken(row[0], name, role, secret)


def authenticate(cur: psycopg2.extensions.cursor, token: str | None) -> Principal:
    """Resolve a presented token to a principal; None or empty gives the anonymous reader."""
    if not token:
        return ANONYMOUS
    cur.execute(
        "UPDATE cim.api_token SET last_used_at = now() "
        "WHERE token_hash = %s AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) "
        "RETURNING id, name, role, counties",
        (psycopg2.Binary(_digest(token)),),
    )
    row = cur.fetchone()
    if row is None:
        raise Unauthenticated("令牌无效、已过期或已吊销", "token is invalid, expired or revoked")
    return Principal(name=row[1], role=Role(row[2]), token_id=row[0], counties=frozenset(row[3] or []))


def revoke_token(cur: psycopg2.extensions.cursor, token_id: int) -> None:
    """Revoke a token by id."""
    cur.execute("UPDATE cim.api_token SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL", (token_id,))
    if cur.rowcount == 0:
        raise NotFound(f"没有可吊销的令牌 {token_id}", f"no active token {token_id}")


def list_tokens(cur: psycopg2.extensions.cursor) -> list[dict[str, Any]]:
    """All tokens without secrets."""
    cur.execute("SELECT id, name, role, counties, token_prefix, created_at, expires_at, revoked_at, last_used_at "
                "FROM cim.api_token ORDER BY id")
    assert cur.description is not None  # a SELECT
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r, strict=False)) for r in cur.fetchall()]


def audit(cur: psycopg2.extensions.cursor, principal: Principal, action: str, *, target: str | None = None,
          county: str | None = None, client_addr: str | None = None, ok: bool = True,
          detail: dict[str, Any] | None = None) -> None:
    """Record a write in the audit log (same transaction as the write where possible)."""
    cur.execute(
        "INSERT INTO cim.audit_log (actor, role, token_id, action, target, county_code, client_addr, ok, detail) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (principal.name, principal.role.value if principal.role else None, principal.token_id, action, target,
         county, client_addr, ok, json.dumps(detail or {}, ensure_ascii=False, default=str)),
    )


CLI_PRINCIPAL = Principal(name="cli", role=Role.admin)
"""The local operator: whoever can run the CLI on the server can already reach the database."""


_AUTH_SQL_ASYNC = (
    "UPDATE cim.api_token SET last_used_at = now() "
    "WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) "
    "RETURNING id, name, role, counties"
)


async def authenticate_async(conn: AsyncConn, token: str | None) -> Principal:
    """:func:`authenticate` for an asyncpg connection (the API's request path)."""
    if not token:
        return ANONYMOUS
    row = await conn.fetchrow(_AUTH_SQL_ASYNC, _digest(token))
    if row is None:
        raise Unauthenticated("令牌无效、已过期或已吊销", "token is invalid, expired or revoked")
    return Principal(name=row["name"], role=Role(row["role"]), token_id=row["id"],
                     counties=frozenset(row["counties"] or []))


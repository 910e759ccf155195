"""Linked tiers (省 ← 市 ← 县) on PostgreSQL logical replication: identity, row ids, publish, subscribe.

A county instance publishes its model; a city or province instance subscribes to the
instances below it and shows every county on one map (docs/tiers.md). This module holds the
database side of it; ``cim tier …`` (:mod:`cim.tier_cli`) is its command line.

Identity and row ids
    Every instance numbers rows from its own sequences, so two counties' rows would collide at
    the province (same ``id``, different rows). An instance is given an identity — its GB/T 2260
    code — with :func:`init`, which restricts the sequences of every replicated table to the
    block ``code × 10^10 + 1 … code × 10^10 + 10^10 − 1`` (``430703`` numbers from
    4 307 030 000 000 001). Blocks of different codes never overlap, ids stay below 2^53 (the
    largest code, 829999, ends below 8.3 × 10^15) so JavaScript, GeoJSON and MVT clients read
    them exactly, and the code of the instance that created a row can be read off its id. Rows
    numbered before the identity are moved into the block once, in one maintenance transaction
    (every id and every reference to it shifted by the same offset, with the reference triggers
    of migration 0050 and the foreign keys off for that transaction only).

Publications
    ``cim_<code>`` carries the rows of the instance's area (``county_code LIKE '<prefix>%'``: a
    county its code, a city its 4 digits, a province its 2) of every table in
    :data:`REPLICATED`: the feature tables of :mod:`cim.schema`, deliveries, DEM registrations and
    their bytes, heartbeats. INSERT, UPDATE and DELETE are published, TRUNCATE never (row filters
    do not apply to it). A row filter used for UPDATE and DELETE must be covered by the replica
    identity, so each table gets a unique ``(id, county_code)`` index as its replica identity.
    Dictionaries are not replicated: every instance seeds the same YAML, and heartbeats carry a
    hash of them so a difference shows in the lower-tier status. ``cim.data_version`` is not
    replicated either: each instance counts its own versions (migration 0100's triggers move
    them for replicated rows).

Subscriptions
    ``cim_<subscriber>_from_<publisher>`` per lower-tier instance; rows whose county code a
    subscription carries are read-only at the subscriber (a row trigger refuses local writes,
    the ingest refuses the county). A city subscribing to its counties re-publishes what it
    receives (PostgreSQL 15 publishes applied changes too), so a province may subscribe to the
    cities or to every county directly; prefixes of one instance's subscriptions never overlap.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions

from cim import auth
from cim.db import fetch_dicts, quote_ident
from cim.errors import ConfigError, Conflict, DatabaseUnavailable, Forbidden, InvalidInput, NotFound
from cim.schema import FEATURE_TABLES, TABLES

log = logging.getLogger(__name__)

ID_BLOCK = 10 ** 10
JS_SAFE_INTEGER = 2 ** 53 - 1
REPLICATOR = "cim_replicator"
LEVELS = ("province", "city", "county")
LEVEL_ZH = {"province": "省级", "city": "市级", "county": "县级"}

#: Tables carried by a publication, in loading order (references before the rows that use them).
REPLICATED: tuple[str, ...] = ("delivery", *FEATURE_TABLES, "dem", "dem_file", "tier_heartbeat")
#: Replicated tables whose ``id`` comes from a sequence (numbered inside the instance's block).
NUMBERED: tuple[str, ...] = ("delivery", *FEATURE_TABLES, "dem")
_CODE = re.compile(r"^[1-9][0-9]{5}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_LOCK = "cim.tier"


# --- codes and blocks ------------------------------------------------------------------------

def validate_code(code: str) -> str:
    """A six-digit GB/T 2260 code of a province (11–82), city or county, else :class:`InvalidInput`."""
    code = str(code).strip()
    if not _CODE.match(code) or not 11 <= int(code[:2]) <= 82:
        raise InvalidInput(f"行政区划代码不合法：{code[:20]}（应为 6 位 GB/T 2260 代码，如 430703）",
                           f"invalid administrative code: {code[:20]} (six GB/T 2260 digits, e.g. 430703)")
    return code


def level_of(code: str) -> str:
    """``province`` (xx0000), ``city`` (xxxx00) or ``county`` from a six-digit code."""
    return "province" if code[2:] == "0000" else "city" if code[4:] == "00" else "county"


def prefix_of(code: str) -> str:
    """The ``county_code`` prefix of the rows an instance of this code holds (cf. ``cim.tier_prefix``)."""
    return {"province": code[:2], "city": code[:4], "county": code}[level_of(code)]


def id_base(code: str) -> int:
    """First id of the block of ``code`` minus one: ``code × 10^10``."""
    base = int(validate_code(code)) * ID_BLOCK
    assert base + ID_BLOCK - 1 <= JS_SAFE_INTEGER
    return base


def publication_name(code: str) -> str:
    """The publication of the instance ``code``."""
    return f"cim_{validate_code(code)}"


@dataclass(frozen=True)
class Identity:
    """Who this instance is in the tiers."""

    code: str
    name: str
    level: str
    id_base: int
    dem_dir: str | None

    @property
    def prefix(self) -> str:
        """``county_code`` prefix of the rows of its area."""
        return prefix_of(self.code)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"code": self.code, "name": self.name, "level": self.level, "level_zh": LEVEL_ZH[self.level],
                "id_base": self.id_base, "id_max": self.id_base + ID_BLOCK - 1, "prefix": self.prefix}


def identity(cur: psycopg2.extensions.cursor) -> Identity | None:
    """This instance's identity, or None before ``cim tier init``."""
    cur.execute("SELECT code, name, level, id_base, dem_dir FROM cim.tier_instance")
    row = cur.fetchone()
    return Identity(*row) if row else None


def require_pg15(cur: psycopg2.extensions.cursor) -> None:
    """:class:`ConfigError` unless the server is PostgreSQL ≥ 15 (publication row filters)."""
    cur.execute("SELECT current_setting('server_version_num')::int")
    row = cur.fetchone()
    assert row is not None
    if row[0] < 150000:
        raise ConfigError("省市县级联需要 PostgreSQL 15 或更高版本（发布的行过滤）",
                          "linked tiers need PostgreSQL 15 or later (publication row filters)")


def require_identity(cur: psycopg2.extensions.cursor) -> Identity:
    """The identity, or :class:`Conflict` telling the operator to run ``cim tier init``."""
    ident = identity(cur)
    if ident is None:
        raise Conflict("本平台尚未设置级联身份，请先运行 `cim tier init 行政区划代码 --name 名称`",
                       "this instance has no tier identity yet; run `cim tier init CODE --name NAME` first")
    return ident


def existing(cur: psycopg2.extensions.cursor, tables: tuple[str, ...] = REPLICATED) -> list[str]:
    """Those of ``tables`` that exist in schema ``cim`` (later migrations add feature tables)."""
    cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'cim' AND table_name = ANY(%s)",
                (list(tables),))
    found = {r[0] for r in cur.fetchall()}
    return [t for t in tables if t in found]


def _references(cur: psycopg2.extensions.cursor, tables: list[str]) -> list[tuple[str, str, str]]:
    """``(table, column, referenced table)`` of every reference to an id of ``tables``: the feature
    tables' ``delivery_id`` and segment ends (checked by triggers, migration 0050) and every
    single-column foreign key of any schema (ingest jobs, the CIM+ applications' tables)."""
    refs = {(t, "delivery_id", "delivery") for t in FEATURE_TABLES if t in tables}
    refs |= {("pipe_segment", c, "pipe_point") for c in TABLES["pipe_segment"].resolved}
    cur.execute(
        "SELECT n.nspname, c.relname, a.attname, rn.nspname, r.relname FROM pg_constraint k "
        "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1] "
        "JOIN pg_class r ON r.oid = k.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace "
        "WHERE k.contype = 'f' AND cardinality(k.conkey) = 1 AND rn.nspname = 'cim' AND r.relname = ANY(%s)",
        (tables,))
    out = sorted(refs)
    for nsp, rel, col, _rnsp, target in cur.fetchall():
        key = (rel, col, target) if nsp == "cim" else (f"{nsp}.{rel}", col, target)
        if key not in refs:
            out.append(key)
    return out


def _table_sql(name: str) -> str:
    schema, _, table = name.rpartition(".")
    return f"{quote_ident(schema or 'cim')}.{quote_ident(table)}"


# --- identity -----------------------------------------------------------------------------------

def init(conn: psycopg2.extensions.connection, code: str, name: str, *, level: str | None = None,
         dem_dir: Path | None = None, principal: auth.Principal) -> dict[str, Any]:
    """Give this instance its identity (idempotent for the same code), in one transaction.

    Rows numbered before (ids below 10^10) move into the block with every reference to them;
    the sequences are restricted to the block; the replicated tables are prepared (replica
    identity, read-only guard); an instance-wide DEM of a county instance becomes the county's.
    Returns what was done.
    """
    code = validate_code(code)
    level = level or level_of(code)
    if level not in LEVELS:
        raise InvalidInput(f"级别应为 {'/'.join(LEVELS)}", f"level must be one of {', '.join(LEVELS)}")
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("请给出平台名称（--name，至多 100 字）", "give the platform a name (--name, ≤ 100 characters)")
    base = id_base(code)
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = 0")
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK,))
            current = identity(cur)
            if current is not None and current.code != code:
                raise Conflict(f"本平台已设置为 {current.code} {current.name}，不能改为 {code}",
                               f"this instance is already {current.code} {current.name}; it cannot become {code}")
            tables = existing(cur, NUMBERED)
            cur.execute("LOCK TABLE " + ", ".join(f"cim.{quote_ident(t)}" for t in tables) + " IN ACCESS EXCLUSIVE MODE")
            moved = _renumber(cur, tables, base)
            if level == "county":   # the DEM of a county platform is its county's
                cur.execute("UPDATE cim.dem SET county_code = %s WHERE county_code = '' AND (NOT is_current OR NOT EXISTS "
                            "(SELECT 1 FROM cim.dem o WHERE o.county_code = %s AND o.is_current))", (code, code))
            sequences = _restrict_sequences(cur, tables, base)
            cur.execute(
                "INSERT INTO cim.tier_instance (code, name, level, id_base, dem_dir, renumbered) "
                "VALUES (%s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT (singleton) DO UPDATE SET name = EXCLUDED.name, "
                "level = EXCLUDED.level, dem_dir = coalesce(EXCLUDED.dem_dir, cim.tier_instance.dem_dir), "
                "renumbered = cim.tier_instance.renumbered || EXCLUDED.renumbered",
                (code, name, level, base, str(dem_dir) if dem_dir else None, _json(moved)))
            prepared = prepare(cur)
            auth.audit(cur, principal, "tier.init", target=f"tier:{code}",
                       detail={"name": name, "level": level, "renumbered": moved})
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return {"code": code, "name": name, "level": level, "id_base": base, "id_max": base + ID_BLOCK - 1,
            "renumbered": moved, "sequences": sequences, "prepared": prepared}


def _renumber(cur: psycopg2.extensions.cursor, tables: list[str], base: int) -> dict[str, int]:
    """Shift ids below 10^10 (numbered before the identity) and every reference to them by ``base``.

    Runs with ``session_replication_role = replica`` for the statements only: the foreign keys
    and the reference triggers of migration 0050 (which refuse id changes) stay off while both
    sides move by the same offset, so every reference still meets its row afterwards. Rows of
    other blocks (received from other instances) are not touched.
    """
    moved: dict[str, int] = {}
    cur.execute("SET LOCAL session_replication_role = replica")
    try:
        for table, column, _target in _references(cur, tables):
            col = quote_ident(column)
            cur.execute(f"UPDATE {_table_sql(table)} SET {col} = {col} + %s WHERE {col} BETWEEN 1 AND %s",
                        (base, ID_BLOCK - 1))
            if cur.rowcount:
                moved[f"{table}.{column}"] = cur.rowcount
        for t in tables:
            cur.execute(f"UPDATE cim.{quote_ident(t)} SET id = id + %s WHERE id BETWEEN 1 AND %s", (base, ID_BLOCK - 1))
            if cur.rowcount:
                moved[t] = cur.rowcount
    finally:
        cur.execute("SET LOCAL session_replication_role = origin")
    return moved


def _restrict_sequences(cur: psycopg2.extensions.cursor, tables: list[str], base: int) -> dict[str, int]:
    """Limit each table's id sequence to the block; the next id follows the block's largest."""
    out = {}
    for t in tables:
        cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", (f"cim.{t}",))
        row = cur.fetchone()
        assert row is not None
        seq = row[0]
        if seq is None:
            continue
        cur.execute(f"SELECT coalesce(max(id), %s) + 1 FROM cim.{quote_ident(t)} WHERE id BETWEEN %s AND %s",
                    (base, base + 1, base + ID_BLOCK - 1))
        row = cur.fetchone()
        assert row is not None
        nxt = int(row[0])
        cur.execute(f"ALTER SEQUENCE {seq} MINVALUE %s MAXVALUE %s START WITH %s RESTART WITH %s NO CYCLE",
                    (base + 1, base + ID_BLOCK - 1, base + 1, nxt))
        out[t] = nxt
    return out


def prepare(cur: psycopg2.extensions.cursor) -> list[str]:
    """Prepare every existing replicated table (``cim.tier_prepare_table``) and set the read-only guard."""
    tables = existing(cur)
    for t in tables:
        cur.execute("SELECT cim.tier_prepare_table(%s)", (t,))
    set_guard(cur)
    return tables


def set_guard(cur: psycopg2.extensions.cursor) -> bool:
    """Enable the read-only triggers while this instance has subscriptions, disable them otherwise."""
    cur.execute("SELECT EXISTS (SELECT 1 FROM cim.tier_subscription)")
    row = cur.fetchone()
    assert row is not None
    on = bool(row[0])
    cur.execute("SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'cim' "
                "AND t.tgname IN (c.relname || '_tier_readonly', c.relname || '_tier_readonly_truncate')")
    for rel, trig in cur.fetchall():
        cur.execute(f"ALTER TABLE cim.{quote_ident(rel)} {'ENABLE' if on else 'DISABLE'} TRIGGER {quote_ident(trig)}")
    return on


def check_writable(cur: psycopg2.extensions.cursor, county: str) -> None:
    """:class:`Forbidden` when ``county``'s rows arrive here from a lower-tier instance."""
    cur.execute("SELECT to_regclass('cim.tier_subscription') IS NOT NULL")
    row = cur.fetchone()
    assert row is not None
    if not row[0]:
        return
    cur.execute("SELECT name, county_code FROM cim.tier_subscription WHERE starts_with(%s, prefix) LIMIT 1",
                (str(county),))
    row = cur.fetchone()
    if row:
        raise Forbidden(f"行政区 {county} 的数据由下级平台 {row[1]} 同步而来（订阅 {row[0]}），本平台只读；请在下级平台入库",
                        f"county {county} is replicated from the lower-tier platform {row[1]} (subscription {row[0]}) "
                        f"and read-only here; load it there")


# --- publish ------------------------------------------------------------------------------------

def _password_sql(conn: psycopg2.extensions.connection, password: str) -> str:
    """The SCRAM verifier of ``password`` for the replication role (the clear text never reaches the server)."""
    return psycopg2.extensions.encrypt_password(password, REPLICATOR, conn, "scram-sha-256")


def hba_lines(database: str, allow: list[str], *, ssl: bool) -> list[str]:
    """``pg_hba.conf`` entries admitting the replication role from each network of ``allow``."""
    out = []
    for item in allow:
        try:
            net = ipaddress.ip_network(item.strip(), strict=False)
        except ValueError as exc:
            raise InvalidInput(f"--allow 不是合法的网段：{item[:60]}", f"--allow is not a network: {item[:60]}") from exc
        out.append(f"{'hostssl' if ssl else 'host'} {database} {REPLICATOR} {net} scram-sha-256")
    return out


def publish(conn: psycopg2.extensions.connection, *, principal: auth.Principal, new_password: bool = False,
            home: Path | None = None) -> dict[str, Any]:
    """Create or refresh this instance's publication and the replication role, in one transaction.

    Returns the facts a subscriber needs (publication, role, database) and, when the role was
    created or ``new_password`` asked for it, the password (shown once: only its SCRAM verifier
    is stored). The bytes of the area's current DEMs are put into ``cim.dem_file``.
    """
    from cim import raster

    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = 0")
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK,))
            ident = require_identity(cur)
            require_pg15(cur)
            tables = prepare(cur)
            pub = publication_name(ident.code)
            where = f"county_code LIKE '{ident.prefix}%'"   # digits only (validate_code)
            spec = ", ".join(f"cim.{quote_ident(t)} WHERE ({where})" for t in tables)
            cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (pub,))
            if cur.fetchone():
                cur.execute(f"ALTER PUBLICATION {quote_ident(pub)} SET TABLE {spec}")
                cur.execute(f"ALTER PUBLICATION {quote_ident(pub)} SET (publish = 'insert, update, delete')")
            else:
                cur.execute(f"CREATE PUBLICATION {quote_ident(pub)} FOR TABLE {spec} "
                            "WITH (publish = 'insert, update, delete')")
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (REPLICATOR,))
            role_exists = cur.fetchone() is not None
            password = None
            if not role_exists or new_password:
                password = secrets.token_urlsafe(24)
                verb = "ALTER" if role_exists else "CREATE"
                cur.execute(f"{verb} ROLE {REPLICATOR} WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE "
                            "PASSWORD %s", (_password_sql(conn, password),))
            cur.execute(f"GRANT USAGE ON SCHEMA cim TO {REPLICATOR}")
            cur.execute(f"GRANT SELECT ON {', '.join(f'cim.{quote_ident(t)}' for t in tables)}, cim.tier_instance "
                        f"TO {REPLICATOR}")
            dems = raster.publish_dem_files(cur, ident.prefix)
            cur.execute("SELECT current_database()")
            row = cur.fetchone()
            assert row is not None
            database = row[0]
            auth.audit(cur, principal, "tier.publish", target=f"publication:{pub}",
                       detail={"tables": tables, "prefix": ident.prefix, "new_password": password is not None,
                               "dem_files": dems})
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return {"publication": pub, "role": REPLICATOR, "database": database, "tables": tables,
            "row_filter": where, "password": password, "dem_files": dems, "identity": ident.to_dict()}


def subscriber_url(role_password: str | None, host: str, port: int, database: str, *, ssl: bool = False) -> str:
    """``postgresql://cim_replicator:…@host:port/db`` for ``cim tier subscribe`` (password URL-quoted)."""
    auth_part = REPLICATOR + (":" + quote(role_password, safe="") if role_password else "")
    netloc = f"{auth_part}@{'[' + host + ']' if ':' in host else host}:{int(port)}"
    query = urlencode({"sslmode": "require"}) if ssl else ""
    return urlunsplit(("postgresql", netloc, "/" + quote(database), query, ""))


def drop_publication(conn: psycopg2.extensions.connection, *, principal: auth.Principal) -> dict[str, Any]:
    """Drop the publication, the replication role (ending its connections) and the unused slots of
    former subscribers, and the DEM bytes kept for them."""
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            ident = require_identity(cur)
            pub = publication_name(ident.code)
            cur.execute(f"DROP PUBLICATION IF EXISTS {quote_ident(pub)}")
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (REPLICATOR,))
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (REPLICATOR,))
            if cur.fetchone():
                cur.execute(f"DROP OWNED BY {REPLICATOR}")
                cur.execute(f"DROP ROLE {REPLICATOR}")
            cur.execute("DELETE FROM cim.dem_file WHERE starts_with(county_code, %s)", (ident.prefix,))
            auth.audit(cur, principal, "tier.unpublish", target=f"publication:{pub}")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    slots = _drop_stale_slots(conn)
    return {"publication": pub, "slots_dropped": slots}


def _drop_stale_slots(conn: psycopg2.extensions.connection) -> list[str]:
    """Inactive logical slots of this database left by subscribers (``cim_…``), which would keep WAL."""
    dropped = []
    with conn.cursor() as cur:
        cur.execute("SELECT slot_name FROM pg_replication_slots WHERE database = current_database() "
                    "AND slot_type = 'logical' AND NOT active AND slot_name LIKE 'cim\\_%%'")
        for (slot,) in cur.fetchall():
            cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            dropped.append(slot)
    conn.commit()
    return dropped


# --- subscribe ----------------------------------------------------------------------------------

def _parse_url(url: str) -> tuple[str, str]:
    """The connection URL with a connect timeout, and ``host:port/db`` to show (never the password)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise InvalidInput("URL 应形如 postgresql://cim_replicator:密码@主机:端口/cim",
                           "the URL must look like postgresql://cim_replicator:PASSWORD@host:port/cim")
    query = dict(parse_qsl(parts.query))
    query.setdefault("connect_timeout", "10")
    shown = f"{parts.hostname}:{parts.port or 5432}{parts.path or '/'}"
    return urlunsplit(parts._replace(query=urlencode(query))), shown


def _probe(url: str, county: str, here: dict[str, set[str]]) -> None:
    """Check the publisher before subscribing: its identity, its publication, its columns."""
    try:
        pconn = psycopg2.connect(url, application_name="cim-tier-probe")
    except psycopg2.OperationalError as exc:
        log.warning("tier subscribe: cannot reach the publisher: %s", exc)
        raise DatabaseUnavailable("无法连接下级平台的数据库，请检查 URL、口令、网络、对方的 CIM_DB_LISTEN 与 pg_hba 设置",
                                  "cannot connect to the lower-tier database; check the URL, password, network and "
                                  "the publisher's CIM_DB_LISTEN and pg_hba entries") from exc
    try:
        with pconn.cursor() as cur:
            try:
                cur.execute("SELECT code, name FROM cim.tier_instance")
                row = cur.fetchone()
            except psycopg2.Error as exc:
                raise InvalidInput("对方不是已发布的 CIM 平台（没有级联身份，请在对方运行 cim tier init 与 cim tier publish）",
                                   "the other side is not a published CIM platform (no tier identity; run cim tier "
                                   "init and cim tier publish there)") from exc
            if row is None or row[0] != county:
                raise InvalidInput(f"对方平台的代码是 {row[0] if row else '（未设置）'}，不是 --county {county}",
                                   f"the publisher is {row[0] if row else '(no identity)'}, not --county {county}")
            cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication_name(county),))
            if cur.fetchone() is None:
                raise InvalidInput(f"对方尚未发布（没有发布 {publication_name(county)}），请在对方运行 cim tier publish",
                                   f"the publisher has no publication {publication_name(county)}; run cim tier publish there")
            cur.execute("SELECT table_name, column_name FROM information_schema.columns "
                        "WHERE table_schema = 'cim' AND table_name = ANY(%s)", (list(REPLICATED),))
            theirs: dict[str, set[str]] = {}
            for t, c in cur.fetchall():
                theirs.setdefault(t, set()).add(c)
    finally:
        pconn.close()
    missing = sorted(f"{t}.{c}" for t, cols in theirs.items() for c in cols - here.get(t, set()))
    if missing:
        raise Conflict("本平台的数据库结构比下级平台旧，请先升级本平台（缺少列：" + ", ".join(missing[:8]) + "）",
                       "this instance's schema is older than the lower-tier one; upgrade this instance first "
                       "(missing columns: " + ", ".join(missing[:8]) + ")")


def _columns_here(cur: psycopg2.extensions.cursor) -> dict[str, set[str]]:
    cur.execute("SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'cim' AND table_name = ANY(%s)", (list(REPLICATED),))
    out: dict[str, set[str]] = {}
    for t, c in cur.fetchall():
        out.setdefault(t, set()).add(c)
    return out


def subscribe(conn: psycopg2.extensions.connection, url: str, county: str, *, principal: auth.Principal,
              name: str | None = None, replace: bool = False) -> dict[str, Any]:
    """Subscribe to the lower-tier instance ``county`` at ``url`` (its publication ``cim_<county>``).

    Refused when the county is this instance, when another subscription already carries any of
    its rows, or (unless ``replace``: delete them first) when rows of it are here already. With
    ``replace``, a subscription recorded in ``cim.tier_subscription`` that PostgreSQL does not have
    (the database was restored from a backup, which holds no subscriptions) is replaced too. The
    initial copy then runs in the background (``cim tier list`` shows its progress).
    """
    county = validate_code(county)
    prefix = prefix_of(county)
    conninfo, shown = _parse_url(url)
    conn.rollback()
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            ident = require_identity(cur)
            require_pg15(cur)
            if county == ident.code:
                raise InvalidInput("不能订阅本平台自己", "an instance cannot subscribe to itself")
            name = name or f"cim_{ident.code}_from_{county}"
            if not _NAME.match(name):
                raise InvalidInput("订阅名只能含小写字母、数字和下划线，且以字母开头",
                                   "a subscription name holds lower-case letters, digits and _ and starts with a letter")
            cur.execute("SELECT t.name, t.county_code, s.oid IS NULL AS stale FROM cim.tier_subscription t "
                        "LEFT JOIN pg_subscription s ON s.subname = t.name "
                        "     AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                        "WHERE starts_with(t.prefix, %s) OR starts_with(%s, t.prefix) OR t.name = %s ORDER BY t.name",
                        (prefix, prefix, name))
            found = cur.fetchall()
            here = _columns_here(cur)
    finally:
        conn.rollback()
    # rows of tier_subscription without their PostgreSQL subscription come from a restored backup
    # (subscriptions are not in a dump): --replace takes their place
    stale = [r[0] for r in found if r[2]] if replace else []
    clash = next((r for r in found if r[0] not in stale), None)
    if clash:
        raise Conflict(f"订阅 {clash[0]}（{clash[1]}）已包含 {county} 的数据或同名",
                       f"subscription {clash[0]} ({clash[1]}) already carries rows of {county} or has that name")
    _probe(conninfo, county, here)
    # held for the session until the subscription exists: CREATE SUBSCRIPTION locks every table it
    # registers, and a concurrent subscribe altering triggers on those tables would deadlock with it
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (_LOCK,))
    conn.autocommit = False
    try:
        return _subscribe_locked(conn, conninfo, county, prefix, name, shown, stale, replace, principal)
    finally:
        conn.rollback()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", (_LOCK,))
        conn.autocommit = False


def _subscribe_locked(conn: psycopg2.extensions.connection, conninfo: str, county: str, prefix: str, name: str,
                      shown: str, stale: list[str], replace: bool, principal: auth.Principal) -> dict[str, Any]:
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK,))
            held = _rows_of(cur, prefix)
            if held and not replace:
                raise Conflict(f"本平台已有 {county} 的数据（{held}），请加 --replace 先删除后订阅",
                               f"rows of {county} are here already ({held}); add --replace to delete them first")
            if stale:   # first: the read-only guard protects the rows a recorded subscription carries
                cur.execute("DELETE FROM cim.tier_subscription WHERE name = ANY(%s)", (stale,))
            if held:
                purge(cur, prefix)
            prepare(cur)
            cur.execute("INSERT INTO cim.tier_subscription (name, county_code, prefix, publication, publisher, created_by) "
                        "VALUES (%s, %s, %s, %s, %s, %s)",
                        (name, county, prefix, publication_name(county), shown, principal.name))
            set_guard(cur)
            auth.audit(cur, principal, "tier.subscribe", target=f"subscription:{name}", county=county,
                       detail={"publisher": shown, "replaced": held, "stale_subscriptions": stale})
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE SUBSCRIPTION {quote_ident(name)} CONNECTION %s PUBLICATION "
                        f"{quote_ident(publication_name(county))} WITH (copy_data = true)", (conninfo,))
    except psycopg2.Error as exc:
        log.warning("CREATE SUBSCRIPTION %s failed: %s", name, exc)
        _forget(conn, name)
        raise DatabaseUnavailable(f"创建订阅失败：{(exc.diag.message_primary or '')[:200]}",
                                  f"creating the subscription failed: {(exc.diag.message_primary or '')[:200]}") from exc
    finally:
        conn.autocommit = False
    return {"name": name, "county": county, "prefix": prefix, "publication": publication_name(county),
            "publisher": shown, "replaced": held}


def _forget(conn: psycopg2.extensions.connection, name: str) -> None:
    conn.autocommit = False
    with conn.cursor() as cur:
        cur.execute("DELETE FROM cim.tier_subscription WHERE name = %s", (name,))
        set_guard(cur)
    conn.commit()


def _rows_of(cur: psycopg2.extensions.cursor, prefix: str) -> dict[str, int]:
    out = {}
    for t in existing(cur):
        cur.execute(f"SELECT count(*) FROM cim.{quote_ident(t)} WHERE starts_with(county_code, %s)", (prefix,))
        row = cur.fetchone()
        assert row is not None
        n = int(row[0])
        if n:
            out[t] = n
    return out


def purge(cur: psycopg2.extensions.cursor, prefix: str) -> dict[str, int]:
    """Delete the rows of ``prefix`` from every replicated table (segments before the rows they refer to)."""
    out = {}
    for t in reversed(existing(cur)):
        cur.execute(f"DELETE FROM cim.{quote_ident(t)} WHERE starts_with(county_code, %s)", (prefix,))
        if cur.rowcount:
            out[t] = cur.rowcount
    return out


def drop_subscription(conn: psycopg2.extensions.connection, name: str, *, principal: auth.Principal,
                      purge_rows: bool = False) -> dict[str, Any]:
    """Drop a subscription; with ``purge_rows`` also delete the rows it brought (one transaction).

    The publisher's replication slot is dropped with it when the publisher answers; otherwise the
    subscription is detached from its slot first and the slot's name is returned, to be dropped
    on the publisher (``cim tier drop --publication`` or ``pg_drop_replication_slot``).
    """
    conn.rollback()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT county_code, prefix FROM cim.tier_subscription WHERE name = %s", (name,))
            row = cur.fetchone()
            cur.execute("SELECT subslotname FROM pg_subscription WHERE subname = %s "
                        "AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())", (name,))
            sub = cur.fetchone()
    finally:
        conn.rollback()
    if row is None and sub is None:
        raise NotFound(f"没有订阅 {name}", f"no subscription {name}")
    left_slot = None
    if sub is not None:
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                try:
                    cur.execute(f"DROP SUBSCRIPTION {quote_ident(name)}")
                except psycopg2.Error as exc:
                    log.warning("DROP SUBSCRIPTION %s: %s; detaching it from its slot", name, exc)
                    cur.execute(f"ALTER SUBSCRIPTION {quote_ident(name)} DISABLE")
                    cur.execute(f"ALTER SUBSCRIPTION {quote_ident(name)} SET (slot_name = NONE)")
                    cur.execute(f"DROP SUBSCRIPTION {quote_ident(name)}")
                    left_slot = sub[0]
        finally:
            conn.autocommit = False
    purged: dict[str, int] = {}
    try:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM cim.tier_subscription WHERE name = %s", (name,))
            if purge_rows and row is not None:
                cur.execute("SET LOCAL statement_timeout = 0")
                purged = purge(cur, row[1])
            set_guard(cur)
            auth.audit(cur, principal, "tier.drop", target=f"subscription:{name}", county=row[0] if row else None,
                       detail={"purged": purged, "slot_left_on_publisher": left_slot})
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return {"name": name, "county": row[0] if row else None, "purged": purged, "slot_left_on_publisher": left_slot}


def refresh(conn: psycopg2.extensions.connection, *, principal: auth.Principal) -> dict[str, Any]:
    """After a software upgrade (a migration may add a replicated table): prepare every table,
    re-publish (same password) when this instance publishes, and refresh every subscription so
    tables the publishers added are copied too (``ALTER SUBSCRIPTION … REFRESH PUBLICATION``)."""
    conn.rollback()
    try:
        with conn.cursor() as cur:
            ident = require_identity(cur)
            tables = prepare(cur)
            cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication_name(ident.code),))
            published = cur.fetchone() is not None
            cur.execute("SELECT t.name FROM cim.tier_subscription t JOIN pg_subscription s ON s.subname = t.name "
                        "AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY 1")
            subs = [r[0] for r in cur.fetchall()]
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    if published:
        publish(conn, principal=principal)
    failed: dict[str, str] = {}
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for name in subs:
                try:
                    cur.execute(f"ALTER SUBSCRIPTION {quote_ident(name)} REFRESH PUBLICATION")
                except psycopg2.Error as exc:   # a publisher that does not answer now: refresh it later
                    failed[name] = (exc.diag.message_primary or str(exc))[:200]
    finally:
        conn.autocommit = False
    return {"tables": tables, "republished": published, "subscriptions": subs, "failed": failed}


# --- listing ------------------------------------------------------------------------------------

def describe(conn: psycopg2.extensions.connection) -> dict[str, Any]:
    """Identity, publication, downstream slots and subscriptions with their state (``cim tier list``)."""
    with conn.cursor() as cur:
        ident = identity(cur)
        out: dict[str, Any] = {"identity": ident.to_dict() if ident else None, "publication": None}
        if ident:
            pub = publication_name(ident.code)
            cur.execute("SELECT tablename FROM pg_publication_tables WHERE pubname = %s ORDER BY tablename", (pub,))
            tables = [r[0] for r in cur.fetchall()]
            cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (pub,))
            if cur.fetchone():
                out["publication"] = {"name": pub, "tables": tables, "prefix": ident.prefix}
        out["downstream"] = fetch_dicts(
            cur, "SELECT s.slot_name, s.active, pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint AS retained_wal_bytes, "
                 "r.client_addr::text, r.state, extract(epoch FROM r.replay_lag)::float8 AS replay_lag_s "
                 "FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid "
                 "WHERE s.database = current_database() AND s.slot_type = 'logical' ORDER BY s.slot_name")
        out["subscriptions"] = subscriptions(cur)
    conn.rollback()
    return out


#: Subscriptions of this database with their workers and initial-copy progress (no parameters).
SUBSCRIPTIONS_SQL = (
    "SELECT t.name, t.county_code, t.prefix, t.publisher, t.created_at, s.subenabled AS enabled, "
    "       w.pid IS NOT NULL AS running, w.last_msg_receipt_time AS last_message_at, "
    "       extract(epoch FROM now() - w.last_msg_receipt_time)::float8 AS last_message_age_s, "
    "       {errors} "
    "       (SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid) AS tables, "
    "       (SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid AND r.srsubstate IN ('r', 's')) AS tables_ready "
    "FROM cim.tier_subscription t "
    "LEFT JOIN pg_subscription s ON s.subname = t.name "
    "     AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "LEFT JOIN pg_stat_subscription w ON w.subid = s.oid AND w.relid IS NULL "
    "{stats} ORDER BY t.county_code")


def subscriptions(cur: psycopg2.extensions.cursor) -> list[dict[str, Any]]:
    """Subscriptions with their worker, errors (PostgreSQL 15 statistics) and copy progress."""
    cur.execute("SELECT current_setting('server_version_num')::int >= 150000")
    row = cur.fetchone()
    assert row is not None
    if row[0]:
        sql = SUBSCRIPTIONS_SQL.format(
            errors="coalesce(st.apply_error_count, 0) AS apply_errors, coalesce(st.sync_error_count, 0) AS sync_errors,",
            stats="LEFT JOIN pg_stat_subscription_stats st ON st.subid = s.oid")
    else:
        sql = SUBSCRIPTIONS_SQL.format(errors="0::bigint AS apply_errors, 0::bigint AS sync_errors,", stats="")
    return fetch_dicts(cur, sql)


def _json(obj: object) -> str:
    import json
    return json.dumps(obj, ensure_ascii=False, default=str)

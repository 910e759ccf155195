"""Lower-tier running status: each instance's heartbeat, and the green / amber / red of those below.

Heartbeat
    Every instance with a tier identity writes one row of ``cim.tier_heartbeat`` (its code) on a
    schedule (:func:`beat`; the API calls it every ``CIM_TIER_HEARTBEAT_S`` seconds from every
    server process, ``cim tier beat`` from a timer): software and schema version, the hash of its
    dictionaries, uptime, last delivery, data versions, errors of the last hour (failed background
    tasks, HTTP 5xx answers) and the state of its own replication. However many processes call it,
    one row is written per interval: the writer takes a transaction-level advisory lock and skips
    when the row is younger than half an interval. The row is in the instance's publication, so
    it reaches its city and province like any county row (a city re-publishes what it receives).

Status
    Where heartbeats arrive by replication, a trigger stamps ``received_at`` (migration 0100):
    ``age`` = now − ``beat_at`` says whether the instance still runs and replicates, ``lag`` =
    ``received_at`` − ``beat_at`` how long its latest beat took to arrive. :func:`status` lists
    every instance below this one (heartbeat rows and subscriptions) with green / amber / red by
    the thresholds of :class:`cim.settings.TierSettings`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from importlib import metadata
from typing import TYPE_CHECKING, Any

import psycopg2.extensions

from cim import versions
from cim.db import connect, quote_ident
from cim.settings import DatabaseSettings, TierSettings
from cim.tiers import LEVEL_ZH, identity, level_of, prefix_of, subscriptions

if TYPE_CHECKING:                   # the server's pool; the CLIs that beat do not load asyncpg
    import asyncpg

log = logging.getLogger(__name__)

_LOCK_KEY = 4490_0100


def software_version() -> str:
    """Version of the installed platform package."""
    try:
        return metadata.version("cim-onemap")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def dict_hash(cur: psycopg2.extensions.cursor) -> str:
    """MD5 over every dictionary table's rows (same YAML seeded → same hash on every tier)."""
    cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'cim' "
                "AND table_name LIKE 'dict\\_%%' ORDER BY table_name")
    parts = []
    for (table,) in cur.fetchall():
        cur.execute(f"SELECT md5(coalesce(string_agg(to_jsonb(d)::text, '|' ORDER BY d.code), '')) "
                    f"FROM cim.{quote_ident(table)} d")
        row = cur.fetchone()
        assert row is not None
        parts.append(f"{table}:{row[0]}")
    cur.execute("SELECT md5(%s)", ("\n".join(parts),))
    row = cur.fetchone()
    assert row is not None
    return str(row[0])


def beat(conn: psycopg2.extensions.connection, *, interval_s: float, started_at: dt.datetime | None = None,
         version: str | None = None) -> bool:
    """Write this instance's heartbeat unless another process did within half an interval.

    Returns True when a row was written (False: no identity, or someone else's beat is fresh).
    """
    try:
        with conn.cursor() as cur:
            ident = identity(cur)
            if ident is None:
                conn.rollback()
                return False
            cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (_LOCK_KEY,))
            row = cur.fetchone()
            assert row is not None
            if not row[0]:
                conn.rollback()
                return False
            cur.execute("SELECT beat_at > clock_timestamp() - make_interval(secs => %s) FROM cim.tier_heartbeat "
                        "WHERE county_code = %s", (interval_s / 2, ident.code))
            row = cur.fetchone()
            if row and row[0]:
                conn.rollback()
                return False
            facts = _facts(cur, ident.prefix)
            cur.execute(
                "INSERT INTO cim.tier_heartbeat (county_code, name, level, software_version, schema_version, dict_hash, "
                "started_at, db_started_at, beat_at, interval_s, last_delivery_id, last_delivery_at, current_deliveries, "
                "data_versions, errors, replication) VALUES (%(code)s, %(name)s, %(level)s, %(version)s, %(schema)s, "
                "%(dict_hash)s, %(started)s, pg_postmaster_start_time(), clock_timestamp(), %(interval)s, %(last_id)s, "
                "%(last_at)s, %(current)s, %(versions)s::jsonb, %(errors)s::jsonb, %(replication)s::jsonb) "
                "ON CONFLICT (county_code) DO UPDATE SET name = EXCLUDED.name, level = EXCLUDED.level, "
                "software_version = EXCLUDED.software_version, schema_version = EXCLUDED.schema_version, "
                "dict_hash = EXCLUDED.dict_hash, started_at = EXCLUDED.started_at, db_started_at = EXCLUDED.db_started_at, "
                "beat_at = EXCLUDED.beat_at, interval_s = EXCLUDED.interval_s, last_delivery_id = EXCLUDED.last_delivery_id, "
                "last_delivery_at = EXCLUDED.last_delivery_at, current_deliveries = EXCLUDED.current_deliveries, "
                "data_versions = EXCLUDED.data_versions, errors = EXCLUDED.errors, replication = EXCLUDED.replication",
                {"code": ident.code, "name": ident.name, "level": ident.level, "version": version or software_version(),
                 "started": started_at, "interval": float(interval_s), **facts})
            cur.execute("DELETE FROM cim.server_error WHERE at < now() - interval '2 days'")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return True


def beat_once(db_settings: DatabaseSettings | str, *, interval_s: float, started_at: dt.datetime | None = None) -> bool:
    """:func:`beat` on a connection of its own (the server's heartbeat loop), then closed."""
    conn = connect(db_settings, application_name="cim-heartbeat")
    try:
        return beat(conn, interval_s=interval_s, started_at=started_at)
    finally:
        conn.close()


async def record_server_error(pool: asyncpg.Pool, status: int, path: str) -> None:
    """Count an HTTP 5xx answer in ``cim.server_error`` (the heartbeat reports the last hour's);
    silent when the database itself is what failed."""
    with contextlib.suppress(Exception):
        await pool.execute("INSERT INTO cim.server_error (status, path) VALUES ($1, $2)", status, path[:300])


def _facts(cur: psycopg2.extensions.cursor, prefix: str) -> dict[str, Any]:
    cur.execute("SELECT max(version) FROM cim_meta.schema_migration")
    row = cur.fetchone()
    assert row is not None
    schema = row[0]
    cur.execute("SELECT id, coalesce(finished_at, submitted_at) FROM cim.delivery WHERE state IN ('current', 'superseded') "
                "AND starts_with(county_code, %s) ORDER BY coalesce(finished_at, submitted_at) DESC, id DESC LIMIT 1",
                (prefix,))
    last = cur.fetchone() or (None, None)
    cur.execute("SELECT count(*) FROM cim.delivery WHERE state = 'current' AND starts_with(county_code, %s)", (prefix,))
    row = cur.fetchone()
    assert row is not None
    current = row[0]
    data_versions = versions.read(cur)
    cur.execute("SELECT (SELECT count(*) FROM cim.task WHERE state = 'failed' AND finished_at > now() - interval '1 hour'), "
                "(SELECT count(*) FROM cim.server_error WHERE at > now() - interval '1 hour')")
    row = cur.fetchone()
    assert row is not None
    failed, http5xx = row
    subs = subscriptions(cur)
    cur.execute("SELECT application_name, state, extract(epoch FROM replay_lag)::float8 FROM pg_stat_replication "
                "ORDER BY application_name")
    downstream = [{"name": n, "state": s, "replay_lag_s": lag} for n, s, lag in cur.fetchall()]
    replication = {
        "subscriptions": [{"name": s["name"], "county": s["county_code"], "running": s["running"],
                           "last_message_age_s": s["last_message_age_s"], "apply_errors": s["apply_errors"],
                           "tables": s["tables"], "tables_ready": s["tables_ready"]} for s in subs],
        "downstream": downstream,
        "max_replay_lag_s": max((d["replay_lag_s"] or 0.0 for d in downstream), default=None),
    }
    return {"schema": schema, "dict_hash": dict_hash(cur), "last_id": last[0], "last_at": last[1], "current": current,
            "versions": json.dumps(data_versions), "errors": json.dumps({"failed_tasks_1h": failed, "http_5xx_1h": http5xx}),
            "replication": json.dumps(replication, default=str)}


# --- status ------------------------------------------------------------------------------------

_HEARTBEATS_SQL = (
    "SELECT h.county_code, h.name, h.level, h.software_version, h.schema_version, h.dict_hash, h.started_at, "
    "       h.beat_at, h.interval_s, h.last_delivery_id, h.last_delivery_at, h.current_deliveries, h.data_versions, "
    "       h.errors, h.replication, h.received_at, "
    "       extract(epoch FROM clock_timestamp() - h.beat_at)::float8 AS age_s, "
    "       extract(epoch FROM h.received_at - h.beat_at)::float8 AS lag_s, "
    "       extract(epoch FROM h.beat_at - h.started_at)::float8 AS uptime_s "
    "FROM cim.tier_heartbeat h ORDER BY h.county_code")

_EXTENT_SQL = (
    "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT coalesce("
    "  (SELECT ST_Extent(a.geom) FROM cim.admin_area a WHERE a.is_current AND a.code = %(code)s),"
    "  (SELECT ST_Extent(d.bounds) FROM cim.dem d WHERE d.is_current AND starts_with(d.county_code, %(prefix)s))) AS e) x")


def thresholds(settings: TierSettings) -> dict[str, Any]:
    """The thresholds as shown to clients."""
    return {"heartbeat_s": settings.heartbeat_s, "amber_after_s": settings.amber_after_s,
            "red_after_s": settings.red_after_s, "lag_amber_s": settings.lag_amber_s, "lag_red_s": settings.lag_red_s}


def classify(item: dict[str, Any], settings: TierSettings, own: dict[str, Any] | None) -> tuple[str, list[dict[str, Any]]]:
    """``green`` / ``amber`` / ``red`` and the reasons (bilingual) for one instance below."""
    reasons: list[dict[str, Any]] = []
    colour = "green"

    def worse(c: str, zh: str, en: str) -> None:
        nonlocal colour
        reasons.append({"level": c, "zh": zh, "en": en})
        if c == "red" or (c == "amber" and colour == "green"):
            colour = c

    age, lag = item.get("age_s"), item.get("lag_s")
    sub = item.get("subscription")
    if age is None:
        worse("red", "尚未收到心跳", "no heartbeat received yet")
    elif age > settings.red_after_s:
        worse("red", f"心跳已 {age:.0f} 秒未更新", f"no heartbeat for {age:.0f} s")
    elif age > settings.amber_after_s:
        worse("amber", f"心跳已 {age:.0f} 秒未更新", f"no heartbeat for {age:.0f} s")
    if lag is not None:
        if lag > settings.lag_red_s:
            worse("red", f"同步延迟 {lag:.0f} 秒", f"replication lag {lag:.0f} s")
        elif lag > settings.lag_amber_s:
            worse("amber", f"同步延迟 {lag:.0f} 秒", f"replication lag {lag:.0f} s")
    if sub is not None:
        if not sub.get("running"):
            worse("amber", "同步进程未连接", "the replication worker is not connected")
        elif sub.get("tables") and sub.get("tables_ready", 0) < sub["tables"]:
            worse("amber", f"初始同步进行中（{sub['tables_ready']}/{sub['tables']} 张表）",
                  f"initial copy in progress ({sub['tables_ready']}/{sub['tables']} tables)")
    if own and item.get("dict_hash") and own.get("dict_hash") and item["dict_hash"] != own["dict_hash"]:
        worse("amber", "字典与本平台不一致", "its dictionaries differ from this instance's")
    if own and item.get("schema_version") and own.get("schema_version") and item["schema_version"] > own["schema_version"]:
        worse("amber", "下级平台的数据库结构较新，请升级本平台", "its schema is newer than this instance's; upgrade this one")
    errors = item.get("errors") or {}
    if errors.get("http_5xx_1h") or errors.get("failed_tasks_1h"):
        worse("amber", f"近一小时错误：5xx {errors.get('http_5xx_1h', 0)} 次，失败任务 {errors.get('failed_tasks_1h', 0)} 个",
              f"errors in the last hour: {errors.get('http_5xx_1h', 0)} HTTP 5xx, "
              f"{errors.get('failed_tasks_1h', 0)} failed tasks")
    return colour, reasons


def status(cur: psycopg2.extensions.cursor, settings: TierSettings) -> dict[str, Any]:
    """This instance and every instance below it with its status colour (``GET /api/tiers``)."""
    ident = identity(cur)
    cur.execute(_HEARTBEATS_SQL)
    assert cur.description is not None  # a SELECT always describes its columns
    cols = [c.name for c in cur.description]
    beats = {r[0]: dict(zip(cols, r, strict=True)) for r in cur.fetchall()}
    subs = subscriptions(cur)
    own = beats.pop(ident.code, None) if ident else None
    codes = sorted(set(beats) | {s["county_code"] for s in subs})
    instances = []
    for code in codes:
        item = dict(beats.get(code) or {"county_code": code, "name": None, "level": None})
        carrier = next((s for s in subs if code.startswith(s["prefix"])), None)
        item["subscription"] = _json_safe(carrier) if carrier else None
        if item.get("level") is None:
            item["level"] = level_of(code)
        item["level_zh"] = LEVEL_ZH.get(item["level"], item["level"])
        item["status"], item["reasons"] = classify(item, settings, own)
        cur.execute(_EXTENT_SQL, {"code": code, "prefix": prefix_of(code)})
        box = cur.fetchone()
        item["bbox"] = [float(v) for v in box] if box and box[0] is not None else None
        item["code"] = item.pop("county_code")
        instances.append(_json_safe(item))
    return {"self": _json_safe(dict(ident.to_dict(), heartbeat=own) if ident else None),
            "thresholds": thresholds(settings), "instances": instances,
            "summary": {c: sum(1 for i in instances if i["status"] == c) for c in ("green", "amber", "red")}}


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (dt.datetime, dt.date)):
        return obj.isoformat()
    return obj

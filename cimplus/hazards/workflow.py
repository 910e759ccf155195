"""The ledger's workflow: manual registration and transitions, on the ORM.

排查 → 登记 → 整改 → 验收 → 销号: the states, actions, permissions and fields are data
(``ledger.yaml``, :mod:`config`); this module applies them. Every change of an entry

- is checked by :func:`cim.auth.authorize` for the entry's county (``report`` / ``accept`` /
  ``oversee``) and, for supervision, against the levels the caller's role may set;
- carries the version the caller saw: a different current version is refused with
  :class:`Conflict` holding the current state (HTTP 409), and so is a concurrent change caught
  at flush time (``version_id_col``);
- writes its event row (who, when, from, to, comment, changed fields) and its audit row in the
  same transaction, so a process killed mid-way leaves the old state or the new state with its
  event, never one without the other.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Any, cast
from zoneinfo import ZoneInfo

import psycopg2.extensions
from sqlalchemy import text
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from cim import auth
from cim.auth import Action, Principal
from cim.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from cimplus.hazards import config
from cimplus.hazards.model import Hazard, HazardEvent

MAX_TEXT = 4000
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def today(timezone: str) -> dt.date:
    """The ledger's current date (deadlines and 逾期 are dates of the ledger's time zone)."""
    return dt.datetime.now(ZoneInfo(timezone)).date()


def _text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"字段 {name} 须为文本", f"field {name} must be text")
    value = value.strip()
    if _CTRL.search(value):
        raise InvalidInput(f"字段 {name} 含有控制字符", f"field {name} contains control characters")
    if len(value) > MAX_TEXT:
        raise InvalidInput(f"字段 {name} 超过 {MAX_TEXT} 字", f"field {name} is longer than {MAX_TEXT} characters")
    return value or None


def parse_field(name: str, value: Any) -> Any:
    """A writable field's value from JSON, checked against its type in ledger.yaml."""
    led = config.ledger()
    spec = led.fields.get(name)
    if spec is None:
        raise InvalidInput(f"未知字段 {name}", f"unknown field {name}", fields=sorted(led.fields))
    if value is None:
        return None
    if spec.type == "text":
        return _text(name, value)
    if spec.type == "code":
        codes = getattr(led, spec.codes or "")
        if not isinstance(value, str) or value not in codes:
            raise InvalidInput(f"字段 {name} 的取值无效：{value!r}", f"invalid value for {name}: {value!r}",
                               allowed=sorted(codes))
        return value
    if spec.type == "level":
        if isinstance(value, bool) or not isinstance(value, int) or value not in led.risk_levels:
            raise InvalidInput("风险等级须为 1–4（一级至四级）", "risk_level must be 1–4")
        return value
    if spec.type == "money":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise InvalidInput(f"字段 {name} 须为金额", f"field {name} must be an amount")
        try:
            amount = Decimal(str(value))
        except InvalidOperation as exc:
            raise InvalidInput(f"字段 {name} 须为金额", f"field {name} must be an amount") from exc
        if not amount.is_finite() or amount < 0 or amount >= Decimal("1e12"):
            raise InvalidInput(f"字段 {name} 须为 0 至 1e12 之间的金额", f"field {name} must be between 0 and 1e12")
        return amount.quantize(Decimal("0.01"))
    if spec.type == "date":
        bad = InvalidInput(f"字段 {name} 须为 2000–2100 年间的日期 YYYY-MM-DD",
                           f"field {name} must be a date YYYY-MM-DD between 2000 and 2100")
        if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise bad
        try:
            day = dt.date.fromisoformat(value)
        except ValueError as exc:
            raise bad from exc
        if not 2000 <= day.year <= 2100:
            raise bad
        return day
    raise InvalidInput(f"未知字段类型 {spec.type}", f"unknown field type {spec.type}")


def _jsonable(v: Any) -> Any:
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    return v


def supervision_allowed(who: Principal, old: str, new: str) -> bool:
    """Whether the caller's role may change supervision from ``old`` to ``new``."""
    if who.role is None:
        return False
    levels = config.ledger().supervision_by_role.get(who.role, [])
    return old in levels and new in levels


def allowed_actions(who: Principal, h: Hazard) -> list[str]:
    """The actions the caller may take on the entry now (for clients showing buttons)."""
    out = []
    for name, act in config.ledger().actions.items():
        if h.status not in act.from_:
            continue
        try:
            auth.authorize(who, act.action, county=h.county_code)
        except (Forbidden, Unauthenticated):
            continue
        if name == "supervise" and not any(supervision_allowed(who, h.supervision, lv)
                                           for lv in config.ledger().supervision if lv != h.supervision):
            continue
        out.append(name)
    return out


def _audit(session: Session, who: Principal, action: str, h: Hazard, client_addr: str | None, detail: dict) -> None:
    # the service's engine is postgresql+psycopg2 (service.py) and the session holds a checked-out
    # connection, so the DBAPI connection is a psycopg2 one and present
    raw = cast(psycopg2.extensions.connection, session.connection().connection.dbapi_connection)
    with raw.cursor() as cur:
        auth.audit(cur, who, action, target=f"hazard:{h.id}", county=h.county_code, client_addr=client_addr,
                   detail=detail)


def load(session: Session, hazard_id: int) -> Hazard:
    """An entry by id, or :class:`NotFound`."""
    h = session.get(Hazard, hazard_id)
    if h is None:
        raise NotFound(f"没有隐患台账条目 {hazard_id}", f"no hazard entry {hazard_id}")
    return h


def stale(current: dict[str, Any]) -> Conflict:
    """The 409 for a change made against an older version; carries the current state."""
    return Conflict("该隐患条目已被他人修改，请刷新后重试", "the entry was changed by someone else; reload and retry",
                    current=current)


def transition(session: Session, who: Principal, hazard_id: int, action: object, version: Any, *,
               comment: str | None = None, fields: dict[str, Any] | None = None, timezone: str = "Asia/Shanghai",
               client_addr: str | None = None, describe=None) -> Hazard:
    """Apply one workflow action to an entry and commit it with its event and audit rows.

    ``describe(h) -> dict`` renders the current state for a 409. Raises :class:`InvalidInput`
    (unknown action, bad fields, missing comment or required fields), :class:`Forbidden`,
    :class:`NotFound`, :class:`Conflict` (stale version, or the action does not apply in the
    entry's state).
    """
    led = config.ledger()
    act = led.actions.get(action) if isinstance(action, str) else None
    if act is None:
        raise InvalidInput(f"未知的操作 {action!r}", f"unknown action {action!r}", actions=sorted(led.actions))
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidInput("须提供条目版本号 version（整数）", "the entry's version (an integer) is required")
    fields = dict(fields or {})
    comment = _text("comment", comment)
    h = load(session, hazard_id)
    describe = describe or (lambda e: {"id": e.id, "version": e.version, "status": e.status})
    if h.version != version:
        raise stale(describe(h))
    auth.authorize(who, act.action, county=h.county_code)
    if h.status not in act.from_:
        raise Conflict(f"条目处于「{led.statuses[h.status].zh}」，不能执行「{act.zh}」",
                       f"action {action} does not apply to an entry that is {h.status}", current=describe(h))
    unknown = sorted(set(fields) - set(act.fields))
    if unknown:
        raise InvalidInput(f"操作「{act.zh}」不能修改字段 {unknown}", f"action {action} may not set fields {unknown}",
                           allowed=act.fields)
    if act.comment == "required" and not comment:
        raise InvalidInput(f"操作「{act.zh}」须填写说明 comment", f"action {action} needs a comment")
    values = {name: parse_field(name, value) for name, value in fields.items()}
    if action == "supervise":
        new = values.get("supervision") or "none"
        if new == h.supervision:
            raise InvalidInput("督办级别未改变", "the supervision level is unchanged")
        if not supervision_allowed(who, h.supervision, new):
            raise Forbidden(f"角色 {who.role.value if who.role else '-'} 不能把督办级别从 {h.supervision} 改为 {new}",
                            f"role {who.role.value if who.role else '-'} may not change supervision "
                            f"from {h.supervision} to {new}")
    changes: dict[str, list[Any]] = {}
    for name, value in values.items():
        old = getattr(h, name)
        if old != value:
            changes[name] = [_jsonable(old), _jsonable(value)]
            setattr(h, name, value)
    missing = [f for f in led.required(act) if getattr(h, f) in (None, "")]
    if missing:
        labels = "、".join(led.fields[f].zh for f in missing)
        raise InvalidInput(f"操作「{act.zh}」前须填写：{labels}", f"action {action} needs {missing} first",
                           missing=missing)
    now = dt.datetime.now(dt.UTC)
    before = h.status
    if act.to and act.to != h.status:
        changes["status"] = [h.status, act.to]
        h.status = act.to
    actor = who.name
    if action in ("close", "reject"):
        h.verified_by, h.verified_at = actor, now
        changes["verified_by"] = [None, actor]
    if action == "close":
        h.closed_by, h.closed_at = actor, now
        changes["closed_by"] = [None, actor]
    if action == "reopen":
        h.closed_by = h.closed_at = None
    h.updated_at = now
    try:
        session.flush()
    except StaleDataError as exc:
        session.rollback()
        raise stale(describe(load(session, hazard_id))) from exc
    session.add(HazardEvent(hazard_id=h.id, actor=actor, role=who.role.value if who.role else None, action=action,
                            from_status=before, to_status=h.status, comment=comment, changes=changes,
                            version=h.version))
    _audit(session, who, f"hazard.{action}", h, client_addr,
           {"number": h.number, "from": before, "to": h.status, "changes": changes, "comment": comment})
    session.commit()
    return h


def next_number(session: Session, county: str, year: int) -> str:
    """``<county>-<yyyy>-<seq>``: the counter row is updated in the caller's transaction, so a
    registration rolled back gives its number back and concurrent ones queue on the row."""
    last = session.execute(text(
        "INSERT INTO cim.hazard_counter AS c (county_code, year, last) VALUES (:county, :year, 1) "
        "ON CONFLICT (county_code, year) DO UPDATE SET last = c.last + 1 RETURNING c.last"),
        {"county": county, "year": year}).scalar_one()
    return f"{county}-{year}-{int(last):05d}"


def register(session: Session, who: Principal, data: dict[str, Any], *, timezone: str = "Asia/Shanghai",
             client_addr: str | None = None) -> Hazard:
    """Register a hazard found by people (巡查, 12345, 上级交办 …): checked, numbered, committed
    in state 已登记 with its event and audit rows."""
    from cimplus.hazards.geometry import parse_geometry

    led = config.ledger()
    reg = led.registration
    if not isinstance(data, dict):
        raise InvalidInput("请求体须为 JSON 对象", "the body must be a JSON object")
    allowed = {"county", "source", "facility_type", "geometry", "facility_refs", *reg.fields}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidInput(f"不能登记字段 {unknown}", f"fields {unknown} cannot be registered", allowed=sorted(allowed))
    county = data.get("county")
    if not (isinstance(county, str) and county.isdigit() and len(county) == 6):
        raise InvalidInput("county 须为 6 位县级行政区代码", "county must be a 6-digit county code")
    auth.authorize(who, Action(reg.permission), county=county)
    source = data.get("source", "patrol")
    if source not in reg.sources:
        raise InvalidInput(f"来源须为 {reg.sources} 之一", f"source must be one of {reg.sources}")
    ftype = data.get("facility_type")
    if ftype not in led.facility_types:
        raise InvalidInput("设施类型无效", "invalid facility_type", allowed=sorted(led.facility_types))
    for name in reg.require:
        if data.get(name) in (None, ""):
            raise InvalidInput(f"登记须填写 {name}", f"registration needs {name}", required=reg.require)
    values = {name: parse_field(name, data[name]) for name in reg.fields if name in data}
    geom_wkt = parse_geometry(data.get("geometry"))
    refs = _facility_refs(session, county, data.get("facility_refs"))
    year = today(timezone).year
    h = Hazard(number=next_number(session, county, year), source=source, facility_type=ftype, facility_refs=refs,
               facility_keys=sorted(r["key"] for r in refs), province_code=county[:2] + "0000",
               city_code=county[:4] + "00", county_code=county, found_by=who.name, status=reg.status,
               supervision="none", hazard_class=values.pop("hazard_class", None) or "general", evidence={},
               shape=text_geom(geom_wkt), geom=text_geom(geom_wkt, marker=True), **values)
    session.add(h)
    session.flush()
    _locate(session, h)
    session.add(HazardEvent(hazard_id=h.id, actor=who.name, role=who.role.value if who.role else None,
                            action="register_manual", from_status=None, to_status=h.status,
                            comment=f"{led.sources[source].zh}登记", changes={k: [None, _jsonable(v)]
                                                                             for k, v in values.items()},
                            version=h.version))
    _audit(session, who, "hazard.register", h, client_addr, {"number": h.number, "source": source})
    session.commit()
    return h


def text_geom(wkt: str, marker: bool = False):
    """SQL expression of a registered geometry (or its marker point) in EPSG:4490."""
    from sqlalchemy import func
    g = func.ST_GeomFromText(wkt, 4490)
    if not marker:
        return g
    return func.ST_PointOnSurface(g) if wkt.startswith(("POLYGON", "MULTIPOLYGON")) else \
        func.ST_ClosestPoint(g, func.ST_Centroid(g))


def _locate(session: Session, h: Hazard) -> None:
    """Street and community codes of a registered entry from the admin areas at its marker."""
    session.execute(text("""
        UPDATE cim.hazard h SET
            community_code = (SELECT a.code FROM cim.admin_area a WHERE a.county_code = h.county_code AND a.is_current
                              AND a.level = 'community' AND ST_Intersects(a.geom, h.geom) LIMIT 1),
            street_code = (SELECT a.code FROM cim.admin_area a WHERE a.county_code = h.county_code AND a.is_current
                           AND a.level = 'street' AND ST_Intersects(a.geom, h.geom) LIMIT 1)
        WHERE h.id = :id"""), {"id": h.id})
    session.expire(h, ["community_code", "street_code"])


def _facility_refs(session: Session, county: str, refs: Any) -> list[dict[str, Any]]:
    """Facility references of a registration: ``[{table, id}]`` of current rows of the county."""
    from cim.schema import TABLES
    from cimplus.hazards.facility import code_sql, key_sql

    if refs in (None, []):
        return []
    if not isinstance(refs, list) or len(refs) > 10:
        raise InvalidInput("facility_refs 须为最多 10 项的列表", "facility_refs must be a list of at most 10 items")
    out = []
    for ref in refs:
        table = ref.get("table") if isinstance(ref, dict) else None
        rid = ref.get("id") if isinstance(ref, dict) else None
        if table not in TABLES or table == "admin_area" or isinstance(rid, bool) or not isinstance(rid, int):
            raise InvalidInput("facility_refs 每项须为 {table, id}", "each facility ref must be {table, id}",
                               tables=sorted(t for t in TABLES if t != "admin_area"))
        row = session.execute(text(
            f"SELECT {key_sql(table, 'x')} AS key, {code_sql(table, 'x')} AS code FROM cim.{table} x "
            "WHERE x.id = :id AND x.county_code = :county AND x.is_current"), {"id": rid, "county": county}).first()
        if row is None:
            raise InvalidInput(f"{table} {rid} 不是该县的现势要素", f"{table} {rid} is not a current feature of the county")
        out.append({"table": table, "id": rid, "key": row.key, "code": row.code})
    return out

"""Reading the ledger: filters, the GeoJSON list (paged), one entry in full, statistics.

Filters arrive as the strings of a query string and are checked here (bilingual 400 on any
bad value), so the HTTP API, the CLI and the exports read the ledger the same way.
逾期 (overdue) is computed from the deadline and the ledger's date, never stored.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from geoalchemy2.shape import to_shape
from shapely.geometry import mapping
from sqlalchemy import ColumnElement, and_, case, func, or_, select, text
from sqlalchemy.orm import Session, selectinload

from cim.auth import Principal
from cim.errors import InvalidInput
from cimplus.hazards import config
from cimplus.hazards.model import Hazard
from cimplus.hazards.workflow import allowed_actions, load, today

_RULE = re.compile(r"^[A-Z][0-9A-Z]{1,7}$")


def _list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [p.strip() for item in items for p in str(item).split(",") if p.strip()]


@dataclass
class Filters:
    """Checked filters of a ledger read."""

    counties: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    facility_types: list[str] = field(default_factory=list)
    risk_levels: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    supervision: list[str] = field(default_factory=list)
    overdue: bool | None = None
    bbox: tuple[float, float, float, float] | None = None

    @classmethod
    def parse(cls, *, county=None, status=None, rule=None, facility_type=None, risk_level=None, source=None,
              supervision=None, overdue=None, bbox=None) -> Filters:
        """Filters from query-string values (comma lists allowed); :class:`InvalidInput` on bad ones."""
        led = config.ledger()
        f = cls()
        for code in _list(county):
            if not (code.isdigit() and len(code) == 6):
                raise InvalidInput(f"行政区代码须为 6 位数字：{code}", f"an area code has 6 digits: {code}")
            f.counties.append(code)
        for s in _list(status):
            if s == "open":
                f.statuses.extend(led.open_statuses)
            elif s in led.statuses:
                f.statuses.append(s)
            else:
                raise InvalidInput(f"状态无效：{s}", f"unknown status: {s}", allowed=[*led.statuses, "open"])
        known_rules = set(config.rules().rules)
        for r in _list(rule):
            if not _RULE.match(r) or r not in known_rules:
                raise InvalidInput(f"规则无效：{r}", f"unknown rule: {r}", allowed=sorted(known_rules))
            f.rules.append(r)
        f.facility_types = _codes(_list(facility_type), led.facility_types, "facility_type")
        f.sources = _codes(_list(source), led.sources, "source")
        f.supervision = _codes(_list(supervision), led.supervision, "supervision")
        for lv in _list(risk_level):
            if lv not in {"1", "2", "3", "4"}:
                raise InvalidInput(f"风险等级须为 1–4：{lv}", f"risk_level must be 1–4: {lv}")
            f.risk_levels.append(int(lv))
        if overdue is not None and str(overdue) != "":
            v = str(overdue).strip().lower()
            if v not in ("true", "false", "1", "0"):
                raise InvalidInput("overdue 须为 true 或 false", "overdue must be true or false")
            f.overdue = v in ("true", "1")
        if bbox:
            f.bbox = _bbox(bbox)
        return f

    def query_string(self) -> dict[str, str]:
        """The filters as query-string values (for next links)."""
        out = {}
        for key, values in (("county", self.counties), ("status", self.statuses), ("rule", self.rules),
                            ("facility_type", self.facility_types), ("source", self.sources),
                            ("supervision", self.supervision), ("risk_level", [str(v) for v in self.risk_levels])):
            if values:
                out[key] = ",".join(dict.fromkeys(values))
        if self.overdue is not None:
            out["overdue"] = "true" if self.overdue else "false"
        if self.bbox:
            out["bbox"] = ",".join(repr(v) for v in self.bbox)
        return out

    def where(self, timezone: str) -> list[Any]:
        """SQLAlchemy conditions on :class:`Hazard`."""
        h = Hazard
        conds: list[Any] = []
        if self.counties:
            parts: list[ColumnElement[bool]] = []
            for code in self.counties:
                if code.endswith("0000"):
                    parts.append(h.county_code.like(code[:2] + "%"))
                elif code.endswith("00"):
                    parts.append(h.county_code.like(code[:4] + "%"))
                else:
                    parts.append(h.county_code == code)
            conds.append(or_(*parts))
        for col, values in ((h.status, self.statuses), (h.rule_id, self.rules), (h.facility_type, self.facility_types),
                            (h.source, self.sources), (h.supervision, self.supervision),
                            (h.risk_level, self.risk_levels)):
            if values:
                conds.append(col.in_(values))
        if self.overdue is not None:
            od = overdue_sql(timezone)
            conds.append(od if self.overdue else ~od)
        if self.bbox:
            conds.append(h.geom.op("&&")(func.ST_MakeEnvelope(*self.bbox, 4490)))
        return conds


def _codes(values: list[str], known: dict, name: str) -> list[str]:
    for v in values:
        if v not in known:
            raise InvalidInput(f"{name} 取值无效：{v}", f"unknown {name}: {v}", allowed=sorted(known))
    return values


def _bbox(value: str) -> tuple[float, float, float, float]:
    bad = InvalidInput("bbox 须为 最小经度,最小纬度,最大经度,最大纬度", "bbox must be minlon,minlat,maxlon,maxlat")
    parts = str(value).split(",")
    if len(parts) != 4:
        raise bad
    try:
        x0, y0, x1, y1 = (float(p) for p in parts)
    except ValueError as exc:
        raise bad from exc
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x0 > x1 or y0 > y1 \
            or not (-180 <= x0 <= 180 and -180 <= x1 <= 180 and -90 <= y0 <= 90 and -90 <= y1 <= 90):
        raise bad
    return x0, y0, x1, y1


def overdue_sql(timezone: str):
    """逾期: an open entry whose deadline has passed (a flag computed at read time)."""
    return and_(Hazard.deadline.is_not(None), Hazard.deadline < today(timezone),
                Hazard.status.in_(config.ledger().open_statuses))


def is_overdue(h: Hazard, timezone: str) -> bool:
    """逾期 of one loaded entry."""
    return bool(h.deadline and h.deadline < today(timezone) and h.status in config.ledger().open_statuses)


def labels(row: dict[str, Any]) -> dict[str, Any]:
    """Chinese labels and the risk colour of an entry's codes."""
    led = config.ledger()
    rules = config.rules().rules
    lv = led.risk_levels.get(row.get("risk_level") or 0)
    rule = rules.get(row.get("rule_id") or "")
    return {"status_zh": led.statuses[row["status"]].zh if row.get("status") in led.statuses else None,
            "source_zh": led.sources[row["source"]].zh if row.get("source") in led.sources else None,
            "facility_type_zh": (led.facility_types[row["facility_type"]].zh
                                 if row.get("facility_type") in led.facility_types else None),
            "hazard_class_zh": (led.hazard_classes[row["hazard_class"]].zh
                                if row.get("hazard_class") in led.hazard_classes else None),
            "risk_level_zh": lv.zh if lv else None, "risk_colour": lv.colour if lv else None,
            "risk_colour_zh": lv.colour_zh if lv else None, "risk_hex": lv.hex if lv else None,
            "supervision_zh": led.supervision[row["supervision"]].zh if row.get("supervision") in led.supervision else None,
            "rule_zh": rule.name_zh if rule else None}


def _iso(v: Any) -> Any:
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    if v.__class__.__name__ == "Decimal":
        return float(v)
    return v


LIST_COLUMNS = ("id", "number", "version", "status", "source", "rule_id", "facility_type", "hazard_class", "risk_level",
                "supervision", "deadline", "condition_cleared", "title", "location", "county_code", "street_code",
                "community_code", "found_at", "updated_at", "previous_id", "responsible_unit", "responsible_person")


def list_geojson(session: Session, filters: Filters, *, limit: int, cursor: int | None, timezone: str,
                 base_url: str = "/api/hazards") -> dict[str, Any]:
    """A page of entries as a GeoJSON FeatureCollection (newest first; geometry = the map marker).

    ``cursor`` is the id after which the page starts (from the ``next`` link)."""
    conds = filters.where(timezone)
    total = session.execute(select(func.count()).select_from(Hazard).where(*conds)).scalar_one()
    page_conds = [*conds, Hazard.id < cursor] if cursor is not None else conds
    od = overdue_sql(timezone)
    cols = [getattr(Hazard, c) for c in LIST_COLUMNS]
    rows = session.execute(
        select(*cols, case((od, True), else_=False).label("overdue"),
               Hazard.evidence["measured"].label("measured"), Hazard.evidence["required"].label("required"),
               Hazard.evidence["unit"].label("unit"), func.ST_AsGeoJSON(Hazard.geom, 7, 0).label("marker"))
        .where(*page_conds).order_by(Hazard.id.desc()).limit(limit + 1)).mappings().all()
    more = len(rows) > limit
    rows = rows[:limit]
    features = []
    for r in rows:
        props = {k: _iso(r[k]) for k in (*LIST_COLUMNS, "overdue", "measured", "required", "unit")}
        props.update(labels(props))
        features.append({"type": "Feature", "id": r["id"], "geometry": json.loads(r["marker"]), "properties": props})
    qs = filters.query_string()
    from urllib.parse import urlencode
    links = [{"rel": "self", "type": "application/geo+json",
              "href": f"{base_url}?{urlencode({**qs, 'limit': limit, **({'cursor': cursor} if cursor else {})})}"}]
    if more and rows:
        links.append({"rel": "next", "type": "application/geo+json",
                      "href": f"{base_url}?{urlencode({**qs, 'limit': limit, 'cursor': rows[-1]['id']})}"})
    return {"type": "FeatureCollection", "numberMatched": int(total), "numberReturned": len(features),
            "timeStamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "features": features, "links": links}


def entry(session: Session, h: Hazard, *, timezone: str, who: Principal | None = None, full: bool = True,
          base_url: str = "/api/hazards") -> dict[str, Any]:
    """One entry in full: every field, labels, 逾期, geometry and marker (GeoJSON), facility
    references, evidence, the event timeline, attachments, linked entries and, for a caller,
    the actions it may take now."""
    cols = [c.key for c in Hazard.__table__.columns if c.key not in ("geom", "shape")]
    out: dict[str, Any] = {c: _iso(getattr(h, c)) for c in cols}
    out.update(labels(out))
    out["overdue"] = is_overdue(h, timezone)
    out["geometry"] = mapping(to_shape(h.shape)) if h.shape is not None else None
    out["marker"] = mapping(to_shape(h.geom)) if h.geom is not None else None
    if who is not None:
        out["allowed_actions"] = allowed_actions(who, h)
    if not full:
        return out
    out["events"] = [{k: _iso(getattr(e, k)) for k in ("id", "at", "actor", "role", "action", "from_status", "to_status",
                                                         "comment", "changes", "version")} for e in h.events]
    out["attachments"] = [{**{k: _iso(getattr(a, k)) for k in ("id", "kind", "sha256", "media_type", "size_bytes",
                                                                "file_name", "caption", "uploaded_by", "uploaded_at")},
                           "href": f"{base_url}/{h.id}/attachments/{a.id}"} for a in h.attachments]
    prev = session.get(Hazard, h.previous_id) if h.previous_id else None
    out["previous"] = {"id": prev.id, "number": prev.number, "status": prev.status} if prev else None
    later = session.execute(select(Hazard.id, Hazard.number, Hazard.status).where(Hazard.previous_id == h.id)).all()
    out["recurrences"] = [{"id": r.id, "number": r.number, "status": r.status} for r in later]
    return out


def get(session: Session, hazard_id: int, *, timezone: str, who: Principal | None = None,
        base_url: str = "/api/hazards") -> dict[str, Any]:
    """:func:`entry` by id (:class:`NotFound` when missing)."""
    load(session, hazard_id)
    h = session.execute(select(Hazard).where(Hazard.id == hazard_id)
                        .options(selectinload(Hazard.events), selectinload(Hazard.attachments))).scalar_one()
    return entry(session, h, timezone=timezone, who=who, base_url=base_url)


def stats(session: Session, filters: Filters, *, timezone: str) -> dict[str, Any]:
    """Counts by status × facility type × admin area (street where known, else county), with
    overdue counts; totals by status, facility type, risk level and area."""
    led = config.ledger()
    od = overdue_sql(timezone)
    area = func.coalesce(Hazard.street_code, Hazard.county_code)
    rows = session.execute(
        select(Hazard.status, Hazard.facility_type, area.label("area"), Hazard.county_code,
               Hazard.risk_level, func.count().label("n"), func.count().filter(od).label("overdue"))
        .where(*filters.where(timezone))
        .group_by(Hazard.status, Hazard.facility_type, area, Hazard.county_code, Hazard.risk_level)).mappings().all()
    codes = sorted({r["area"] for r in rows} | {r["county_code"] for r in rows})
    names: dict[str, str] = dict(session.execute(text(
        "SELECT DISTINCT ON (code) code, name FROM cim.admin_area WHERE code = ANY(:codes) AND is_current "
        "ORDER BY code, id DESC"), {"codes": codes}).all()) if codes else {}
    by: dict[str, dict[Any, int]] = {"status": {}, "facility_type": {}, "risk_level": {}}
    areas: dict[str, dict[str, Any]] = {}
    matrix: dict[tuple[str, str, str], dict[str, Any]] = {}
    total = overdue = 0
    for r in rows:
        n, o = int(r["n"]), int(r["overdue"])
        total += n
        overdue += o
        for key in by:
            by[key][r[key]] = by[key].get(r[key], 0) + n
        a = areas.setdefault(r["area"], {"code": r["area"], "name": names.get(r["area"]), "county_code": r["county_code"],
                                         "level": "county" if r["area"] == r["county_code"] else "street",
                                         "total": 0, "overdue": 0, "by_status": {}})
        a["total"] += n
        a["overdue"] += o
        a["by_status"][r["status"]] = a["by_status"].get(r["status"], 0) + n
        m = matrix.setdefault((r["status"], r["facility_type"], r["area"]),
                              {"status": r["status"], "facility_type": r["facility_type"], "area_code": r["area"],
                               "count": 0, "overdue": 0})
        m["count"] += n
        m["overdue"] += o
    return {"total": total, "overdue": overdue,
            "by_status": {k: {"count": v, "zh": led.statuses[k].zh} for k, v in sorted(by["status"].items())},
            "by_facility_type": {k: {"count": v, "zh": led.facility_types[k].zh if k in led.facility_types else k}
                                 for k, v in sorted(by["facility_type"].items())},
            "by_risk_level": {str(k): {"count": v, "zh": led.risk_levels[k].zh, "colour": led.risk_levels[k].colour}
                              for k, v in sorted(by["risk_level"].items())},
            "by_area": sorted(areas.values(), key=lambda a: a["code"]),
            "matrix": sorted(matrix.values(), key=lambda m: (m["area_code"], m["facility_type"], m["status"])),
            "filters": filters.query_string(), "as_of": today(timezone).isoformat()}

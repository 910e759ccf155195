"""County mappings: the field and value mappings a county confirmed, saved in the database.

A county's survey contractors deliver the same way each time, so what a county confirmed once
(建筑层数 → floors_above, 砖混 → QT) is kept in ``cim.county_mapping`` (migration 0090) as a new
version, and :func:`latest` hands the newest to the mapping stage for the county's next
delivery, where it counts as the user's mapping. Saving is audited (``ingest.mapping.save``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg2.extensions

from cim import auth
from cim.errors import InvalidInput, NotFound
from cim.schema import FEATURE_TABLES, feature_table
from ingest.model import LAYER_SEP, UNMAPPED, UserMapping


def _columns() -> set[str]:
    return {c for t in FEATURE_TABLES for c in feature_table(t).kinds()}


def check(mapping: UserMapping) -> UserMapping:
    """The mapping when every target is a column of a feature table (or empty: mapped to nothing),
    else InvalidInput."""
    cols = _columns()
    bad = sorted({c for c in mapping.fields.values() if c not in cols and c != UNMAPPED}
                 | {c for c in mapping.values if c not in cols})
    if bad:
        raise InvalidInput(f"映射的目标字段不存在：{', '.join(bad)}", f"mapping targets no such column: {', '.join(bad)}",
                           columns=bad)
    return mapping


def latest(cur: psycopg2.extensions.cursor, county: str) -> UserMapping | None:
    """The county's newest saved mapping, or None."""
    cur.execute("SELECT version, mapping FROM cim.county_mapping WHERE county_code = %s "
                "ORDER BY version DESC LIMIT 1", (county,))
    row = cur.fetchone()
    if row is None:
        return None
    return UserMapping.from_dict(row[1], source=f"县级映射 {county} v{row[0]}")


def save(cur: psycopg2.extensions.cursor, county: str, mapping: UserMapping, *, principal: auth.Principal,
         source_job: str | None = None, note: str | None = None, client_addr: str | None = None) -> int:
    """Save ``mapping`` as the county's next version (audited, in the caller's transaction); the version."""
    auth.authorize(principal, auth.Action.write, county=county)
    check(mapping)
    if not mapping:
        raise InvalidInput("映射为空，未保存", "the mapping is empty; nothing saved")
    cur.execute("SELECT pg_advisory_xact_lock(hashtext('cim.county_mapping:' || %s))", (county,))
    cur.execute("SELECT coalesce(max(version), 0) + 1 FROM cim.county_mapping WHERE county_code = %s", (county,))
    row = cur.fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    version = row[0]
    cur.execute("INSERT INTO cim.county_mapping (county_code, version, mapping, source_job, note, created_by) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (county, version, json.dumps(mapping.to_dict(), ensure_ascii=False), source_job, note, principal.name))
    auth.audit(cur, principal, "ingest.mapping.save", target=f"county_mapping:{county}:v{version}", county=county,
               client_addr=client_addr, detail={"source_job": source_job, "fields": len(mapping.fields),
                                                "values": sum(len(v) for v in mapping.values.values())})
    return version


def listing(cur: psycopg2.extensions.cursor, county: str | None = None) -> list[dict[str, Any]]:
    """Every saved version (newest first), optionally of one county."""
    cur.execute("SELECT county_code, version, mapping, source_job, note, created_by, created_at "
                "FROM cim.county_mapping WHERE %s::text IS NULL OR county_code = %s "
                "ORDER BY county_code, version DESC", (county, county))
    return [{"county": r[0], "version": r[1], "mapping": r[2], "source_job": r[3], "note": r[4],
             "created_by": r[5], "created_at": r[6]} for r in cur.fetchall()]


def from_report(report: dict[str, Any]) -> UserMapping:
    """The mapping a dry run used that is worth keeping: fields decided by proposal or by the user
    (a profile's own rules need no saving), fields the user mapped to nothing, and the value
    mappings given by the user. A field mapped alike in every layer is kept by its name, one mapped
    differently per layer as ``LAYER::FIELD`` for each."""
    kept: dict[str, dict[str, str]] = {}               # field → layer → target worth keeping
    outcome: dict[str, set[str | None]] = {}           # field → its targets in every layer holding it
    values: dict[str, dict[str, str]] = {}
    for layer in report.get("summary", {}).get("layers", []):
        for m in layer.get("mapping", []):
            src, how, target = m["source_field"], m.get("how"), m.get("target") or None
            outcome.setdefault(src, set()).add(target)
            if how == "proposed" and target or how == "user":
                kept.setdefault(src, {})[layer["source_layer"]] = target or UNMAPPED
        for v in layer.get("value_mappings", []):
            if v.get("how") == "user":
                values.setdefault(v["column"], {})[v["value"]] = v["code"]
    fields: dict[str, str] = {}
    for src, per_layer in kept.items():
        if len(outcome[src]) == 1:                     # the same in every layer holding it: one plain entry
            fields[src] = next(iter(per_layer.values()))
        else:                                          # else for the layers that decided it only
            fields.update({f"{layer}{LAYER_SEP}{src}": target for layer, target in per_layer.items()})
    return UserMapping(fields, values)


def from_report_file(path: Path) -> UserMapping:
    """:func:`from_report` of a JSON report file, or NotFound."""
    if not path.is_file():
        raise NotFound("任务没有 JSON 报告（质检未完成）", "the job has no JSON report (validation has not finished)")
    return from_report(json.loads(path.read_text(encoding="utf-8")))


def job_report(cur: psycopg2.extensions.cursor, job_id: str) -> tuple[str, Path]:
    """The county and the JSON report file of an upload job, or NotFound."""
    cur.execute("SELECT county_code, work_dir FROM cim.ingest_job WHERE id = %s", (job_id,))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"没有入库任务 {job_id}", f"no ingest job {job_id}")
    return row[0], Path(row[1]) / "report.json"


def parse_options(maps: list[str] | None, map_values: list[str] | None, source: str = "--map") -> UserMapping:
    """A mapping from ``SOURCE=COLUMN`` and ``COLUMN:VALUE=CODE`` option texts, or InvalidInput.
    ``SOURCE=`` (no column) maps the delivered field to nothing; ``LAYER::SOURCE=COLUMN`` maps it
    in that source layer only."""
    fields: dict[str, str] = {}
    values: dict[str, dict[str, str]] = {}
    for text in maps or []:
        src, sep, col = text.partition("=")
        if not sep or not src.strip():
            raise InvalidInput(f"--map 须为 交付字段=目标字段（或 交付字段= 表示不导入）：{text}",
                               f"--map must be SOURCE_FIELD=COLUMN (or SOURCE_FIELD= for not mapped): {text}")
        fields[src.strip()] = col.strip()
    for text in map_values or []:
        head, sep, code = text.rpartition("=")
        col, colon, value = head.partition(":")
        if not sep or not colon or not col.strip() or not value.strip() or not code.strip():
            raise InvalidInput(f"--map-value 须为 目标字段:交付值=代码：{text}",
                               f"--map-value must be COLUMN:VALUE=CODE: {text}")
        values.setdefault(col.strip(), {})[value.strip()] = code.strip()
    return check(UserMapping(fields, values, source))

"""The atomic, versioned loader: a validated delivery replaces the previous one of its scope.

Layer scope
    A delivery replaces, for its county, every *scope* it contains. The scope of a pipeline
    batch is ``(county, target table, network)`` (``pipe_point:PS``, ``pipe_segment:RQ``): a
    gas delivery never retires the water network. Every other target is scoped by
    ``(county, target table)`` (``building``, ``green_space`` …). The scopes of a delivery are
    kept in ``cim.delivery.layers``.

One transaction
    Everything below happens in one transaction on one connection, so a failure at any point
    (bad geometry found by the database checks, a constraint, a killed process, a lost
    connection) leaves the database exactly as it was:

    1. a per-county advisory lock serialises loads and restores of the same county;
    2. the same file (sha256) already loaded for the county is a no-op;
    3. the delivery row is inserted (state ``loading``);
    4. each target's batches are streamed with ``COPY … FROM STDIN`` into a temporary staging
       table (geometries as hex EWKB, SRID 4490), in chunks;
    5. database-side checks on the staging tables (geometry present, non-empty, SRID 4490,
       type compatible with the target column);
    6. swap: the current rows of each scope get ``is_current = false``, the staged rows are
       inserted as current; pipe segments get ``start_point_id`` / ``end_point_id`` from the
       points now current for the county and network (this delivery's points when it brought
       them, else the points already in force);
    7. the delivery row becomes ``current`` with counts and ``finished_at``; deliveries left
       without current rows become ``superseded``; the action is audited.

    The statement triggers of migration 0003 bump ``cim.data_version`` of every table the swap
    touched, in the same transaction.

History and restore
    Rows of earlier deliveries stay with ``is_current = false``; :func:`restore` makes one
    delivery current again for its scopes in one transaction (audited, versions bumped).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2.extensions
import shapely

from cim import auth
from cim.db import fetch_dicts, quote_ident
from cim.errors import Conflict, IngestRejected, InvalidInput, NotFound
from ingest.model import TARGETS, Delivery, LayerBatch, Report

log = logging.getLogger(__name__)

# Load order: points before segments so segment ends can be resolved.
ORDER = ("admin_area", "building", "pipe_point", "pipe_segment", "green_space", "streetlight")
NETWORK_SCOPED = frozenset({"pipe_point", "pipe_segment"})
# Columns the loader sets itself (never taken from a batch frame).
_LOADER_COLUMNS = frozenset({"id", "county_code", "delivery_id", "is_current", "start_point_id", "end_point_id"})
# Geometry column type per target, as declared in migration 0003.
_GEOM_TYPE = {"admin_area": "ST_MultiPolygon", "building": "ST_MultiPolygon", "green_space": "ST_MultiPolygon",
              "pipe_point": "ST_Point", "streetlight": "ST_Point", "pipe_segment": "ST_LineString"}
_COMPATIBLE = {"ST_MultiPolygon": ("ST_Polygon", "ST_MultiPolygon"), "ST_Point": ("ST_Point", "ST_MultiPoint"),
               "ST_LineString": ("ST_LineString", "ST_MultiLineString")}
CHUNK_ROWS = 50_000
_INT_TYPES = {"smallint", "integer", "bigint"}

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: phase is ``copy`` (rows staged) or ``swap``."""


@dataclass
class LoadResult:
    """What a load or restore did."""

    delivery_id: int
    state: str                                    # current | duplicate
    counts: dict[str, int] = field(default_factory=dict)
    scopes: list[str] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)
    archive_path: str | None = None
    message_zh: str = ""
    message_en: str = ""

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return dict(self.__dict__)


# --- archive -------------------------------------------------------------------------------

def sha256_of(path: Path) -> str:
    """SHA-256 of a file (or of every file of a directory, in name order)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def archive_original(path: Path, sha256: str, archive_dir: Path) -> Path:
    """Keep the original upload under ``<archive_dir>/<sha256>/<file name>`` (idempotent).

    The copy is written beside its final name and renamed, so a crash never leaves a partial
    archive under the final name.
    """
    dest_dir = archive_dir / sha256
    dest = dest_dir / path.name
    if dest.exists():
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=dest_dir)) / path.name
    if path.is_dir():
        shutil.copytree(path, tmp)
    else:
        shutil.copyfile(path, tmp)
    os.replace(tmp, dest)
    shutil.rmtree(tmp.parent, ignore_errors=True)
    return dest


# --- scopes --------------------------------------------------------------------------------

def _networks(batch: LayerBatch) -> list[str]:
    if "network" in batch.frame.columns:
        vals = batch.frame["network"].dropna().unique().tolist()
        if vals:
            return sorted(str(v) for v in vals)
    if batch.network:
        return [batch.network]
    raise InvalidInput(f"管线图层 {batch.source_layer} 未给出管线类别（network）",
                       f"pipeline layer {batch.source_layer} has no network code")


def scopes(delivery: Delivery) -> list[str]:
    """Every scope the delivery replaces, sorted (e.g. ``building``, ``pipe_point:JS``)."""
    out: set[str] = set()
    for b in delivery.batches:
        if b.target in NETWORK_SCOPED:
            out.update(f"{b.target}:{n}" for n in _networks(b))
        else:
            out.add(b.target)
    return sorted(out)


def _split_scope(scope: str) -> tuple[str, str | None]:
    target, _, network = scope.partition(":")
    if target not in TARGETS:
        raise InvalidInput(f"未知的图层范围 {scope}", f"unknown layer scope {scope}")
    return target, network or None


# --- COPY buffers ----------------------------------------------------------------------------

def _table_columns(cur: psycopg2.extensions.cursor, target: str) -> dict[str, str]:
    """Column name → data type of ``cim.<target>`` (the whitelist for identifiers)."""
    cur.execute("SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'cim' AND table_name = %s ORDER BY ordinal_position", (target,))
    return dict(cur.fetchall())


def _column_defaults(cur: psycopg2.extensions.cursor, target: str) -> dict[str, str]:
    """Default expressions of ``cim.<target>`` as declared in the migrations (schema text)."""
    cur.execute("SELECT column_name, column_default FROM information_schema.columns "
                "WHERE table_schema = 'cim' AND table_name = %s AND column_default IS NOT NULL "
                "AND column_name <> 'id'", (target,))
    return dict(cur.fetchall())


def _coerce(series: pd.Series, dtype: str, column: str, layer: str) -> pd.Series:
    """Bring a frame column into a form COPY accepts for the column's SQL type."""
    if dtype in _INT_TYPES:
        num = pd.to_numeric(series, errors="coerce")
        try:
            return num.astype("Int64")
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"图层 {layer} 字段 {column} 含非整数值", f"layer {layer} field {column} has "
                               "non-integer values") from exc
    if dtype == "double precision":
        return pd.to_numeric(series, errors="coerce")
    if dtype == "date" and pd.api.types.is_datetime64_any_dtype(series):
        return series.dt.strftime("%Y-%m-%d")
    if dtype in ("text", "character varying", "character") and not pd.api.types.is_numeric_dtype(series):
        # PostgreSQL text cannot hold NUL bytes.
        return series.astype("string").str.replace("\x00", "", regex=False)
    return series


def copy_frame(batch: LayerBatch, columns: dict[str, str]) -> tuple[list[str], pd.DataFrame]:
    """The columns and frame to COPY for one batch: table columns present in the frame, the
    batch's lineage and network, and ``geom`` as hex EWKB with SRID 4490."""
    df = batch.frame
    out: dict[str, pd.Series | np.ndarray | str] = {}
    for col, dtype in columns.items():
        if col in _LOADER_COLUMNS or col == "geom":
            continue
        if col in df.columns:
            out[col] = _coerce(df[col], dtype, col, batch.source_layer)
        elif col == "source_layer":
            out[col] = batch.source_layer
        elif col == "network" and batch.network:
            out[col] = batch.network
        elif col == "subtype" and batch.subtype:
            out[col] = batch.subtype
    geoms = shapely.set_srid(np.asarray(df["geom"], dtype=object), 4490)
    out["geom"] = shapely.to_wkb(geoms, hex=True, include_srid=True)
    frame = pd.DataFrame(out, index=df.index)
    return list(frame.columns), frame


def _csv(frame: pd.DataFrame) -> io.StringIO:
    buf = io.StringIO()
    frame.to_csv(buf, header=False, index=False, na_rep="", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    buf.seek(0)
    return buf


# --- the load --------------------------------------------------------------------------------

def _lock_county(cur: psycopg2.extensions.cursor, county: str) -> None:
    cur.execute("SELECT pg_advisory_xact_lock(hashtext('cim.ingest'), hashtext(%s))", (county,))


def find_duplicate(cur: psycopg2.extensions.cursor, sha256: str, county: str) -> dict | None:
    """The loaded delivery (current or superseded) of this county with the same file hash."""
    rows = fetch_dicts(cur, "SELECT id, state, file_name, submitted_at FROM cim.delivery "
                            "WHERE sha256 = %s AND county_code = %s AND state IN ('current', 'superseded') "
                            "ORDER BY id DESC LIMIT 1", (sha256, county))
    return rows[0] if rows else None


def load(conn: psycopg2.extensions.connection, report: Report, *, principal: auth.Principal,
         archive_dir: Path | None = None, county: str | None = None, client_addr: str | None = None,
         progress: Progress | None = None, originals: list[Path] | None = None) -> LoadResult:
    """Load a validated delivery atomically (see the module docstring).

    ``originals`` are the uploaded files (default: ``delivery.path``); each is archived under
    ``<archive_dir>/<sha256 of the delivery>/``. Raises :class:`IngestRejected` when the report
    has errors and :class:`InvalidInput` when the rows do not fit the tables; in both cases
    nothing is written.
    """
    delivery = report.delivery
    county = county or delivery.county_code
    if not county:
        raise InvalidInput("未指定县级行政区代码（--county）", "no county code given (--county)")
    auth.authorize(principal, auth.Action.write, county=county)
    if report.has_errors:
        raise IngestRejected("质检发现错误，成果未入库", "validation found errors; the delivery was not loaded",
                             errors=sum(f.severity.value == "error" for f in report.findings))
    if not delivery.batches:
        raise InvalidInput("成果中没有可入库的图层", "the delivery contains no loadable layer")
    scope_list = scopes(delivery)
    archived = None
    if archive_dir:
        for original in originals or [delivery.path]:
            path = archive_original(original, delivery.sha256, archive_dir)
            archived = archived or path
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = 0")
            _lock_county(cur, county)
            dup = find_duplicate(cur, delivery.sha256, county)
            if dup is not None:
                auth.audit(cur, principal, "ingest.duplicate", target=f"delivery:{dup['id']}", county=county,
                           client_addr=client_addr, detail={"sha256": delivery.sha256, "file": delivery.file_name})
                conn.commit()
                return LoadResult(dup["id"], "duplicate", scopes=scope_list,
                                  archive_path=str(archived) if archived else None,
                                  message_zh=f"同一文件（sha256 相同）已作为成果 {dup['id']} 入库（{dup['state']}），未重复入库",
                                  message_en=f"the same file (same sha256) was already loaded as delivery {dup['id']} "
                                             f"({dup['state']}); nothing loaded")
            delivery_id = _insert_delivery(cur, delivery, county, scope_list, archived, principal)
            try:
                counts, copied = _stage_all(cur, delivery, progress)
                if progress:
                    progress("swap", 0, len(scope_list))
                superseded = _swap(cur, delivery_id, county, scope_list, copied)
            except (psycopg2.DataError, psycopg2.IntegrityError) as exc:
                raise _constraint_error(exc) from exc
            cur.execute("UPDATE cim.delivery SET state = 'current', counts = %s::jsonb, finished_at = now(), "
                        "message = NULL WHERE id = %s", (_json(counts), delivery_id))
            auth.audit(cur, principal, "ingest.load", target=f"delivery:{delivery_id}", county=county,
                       client_addr=client_addr,
                       detail={"file": delivery.file_name, "sha256": delivery.sha256, "counts": counts,
                               "scopes": scope_list, "superseded": superseded})
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    if progress:
        progress("swap", len(scope_list), len(scope_list))
    return LoadResult(delivery_id, "current", counts, scope_list, superseded, str(archived) if archived else None,
                      f"已入库成果 {delivery_id}：" + "，".join(f"{k} {v} 条" for k, v in counts.items()),
                      f"loaded delivery {delivery_id}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


def _constraint_error(exc: psycopg2.Error) -> InvalidInput:
    """A bilingual error naming the column or constraint the rows violate (no server text)."""
    diag = exc.diag
    what = diag.constraint_name or diag.column_name or (diag.message_primary or "").split(":")[0]
    log.warning("load refused by the database: %s", exc)
    return InvalidInput(f"数据不符合数据库约束（{what}），成果未入库",
                        f"rows violate a database constraint ({what}); nothing was loaded",
                        table=diag.table_name, column=diag.column_name, constraint=diag.constraint_name)


def _json(obj: object) -> str:
    import json
    return json.dumps(obj, ensure_ascii=False, default=str)


def _joined(values: list[str | None]) -> str | None:
    vals = sorted({v for v in values if v})
    return ", ".join(vals) or None


def _insert_delivery(cur, delivery: Delivery, county: str, scope_list: list[str], archived: Path | None,
                     principal: auth.Principal) -> int:
    profiles = _joined([b.profile_id for b in delivery.batches])
    cur.execute(
        "INSERT INTO cim.delivery (county_code, file_name, sha256, size_bytes, archive_path, profile, layers, "
        "source_crs, encoding, state, submitted_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'loading', %s) "
        "RETURNING id",
        (county, delivery.file_name, delivery.sha256, delivery.size_bytes, str(archived) if archived else None,
         profiles, scope_list, _joined([b.source_crs for b in delivery.batches]),
         _joined([b.encoding for b in delivery.batches]), principal.name))
    return cur.fetchone()[0]


def _stage_all(cur, delivery: Delivery, progress: Progress | None) -> tuple[dict[str, int], dict[str, list[str]]]:
    """COPY every batch into ``pg_temp.stage_<target>``; return rows and copied columns per target."""
    total = sum(len(b) for b in delivery.batches)
    done = 0
    counts: dict[str, int] = {}
    copied: dict[str, list[str]] = {}
    by_target: dict[str, list[LayerBatch]] = {}
    for b in delivery.batches:
        by_target.setdefault(b.target, []).append(b)
    for target in ORDER:
        if target not in by_target:
            continue
        columns = _table_columns(cur, target)
        stage = quote_ident(f"stage_{target}")
        staged_cols = [c for c in columns if c not in _LOADER_COLUMNS]
        select = ", ".join("geom::geometry AS geom" if c == "geom" else quote_ident(c) for c in staged_cols)
        cur.execute(f"CREATE TEMP TABLE {stage} ON COMMIT DROP AS "
                    f"SELECT {select} FROM cim.{quote_ident(target)} WITH NO DATA")
        for batch in by_target[target]:
            cols, frame = copy_frame(batch, columns)
            col_sql = ", ".join(quote_ident(c) for c in cols)
            for start in range(0, len(frame), CHUNK_ROWS):
                chunk = frame.iloc[start:start + CHUNK_ROWS]
                cur.copy_expert(f"COPY pg_temp.{stage} ({col_sql}) FROM STDIN WITH (FORMAT csv)", _csv(chunk))
                done += len(chunk)
                if progress:
                    progress("copy", done, total)
            counts[target] = counts.get(target, 0) + len(frame)
            copied.setdefault(target, [])
            copied[target] += [c for c in cols if c not in copied[target]]
        _check_stage(cur, target, stage)
    return counts, copied


def _check_stage(cur, target: str, stage: str) -> None:
    """Database-side checks on staged rows: geometry present, non-empty, SRID 4490, right type."""
    cur.execute(
        f"SELECT source_layer, source_row, CASE WHEN geom IS NULL THEN 'null' WHEN ST_IsEmpty(geom) THEN 'empty' "
        f"WHEN ST_SRID(geom) <> 4490 THEN 'srid' ELSE ST_GeometryType(geom) END "
        f"FROM pg_temp.{stage} WHERE geom IS NULL OR ST_IsEmpty(geom) OR ST_SRID(geom) <> 4490 "
        f"OR ST_GeometryType(geom) <> ALL(%s) LIMIT 5", (list(_COMPATIBLE[_GEOM_TYPE[target]]),))
    bad = cur.fetchall()
    if bad:
        where = "; ".join(f"{layer} #{row}: {what}" for layer, row, what in bad)
        raise InvalidInput(f"{target} 的几何不可入库（空、坐标系或类型不符）：{where}",
                           f"{target} geometries cannot be stored (empty, wrong SRID or type): {where}")
    if _GEOM_TYPE[target] != "ST_MultiPolygon":
        cur.execute(f"SELECT source_layer, source_row FROM pg_temp.{stage} "
                    f"WHERE ST_NumGeometries(geom) > 1 LIMIT 5")
        multi = cur.fetchall()
        if multi:
            where = "; ".join(f"{layer} #{row}" for layer, row in multi)
            raise InvalidInput(f"{target} 含多部件几何：{where}", f"{target} has multi-part geometries: {where}")


def _geom_expr(target: str) -> str:
    """Staged geometry converted to the target column type (single parts were checked)."""
    if _GEOM_TYPE[target] == "ST_MultiPolygon":
        return "ST_Multi(s.geom)"
    return "CASE WHEN ST_NumGeometries(s.geom) = 1 AND GeometryType(s.geom) LIKE 'MULTI%%' " \
           "THEN ST_GeometryN(s.geom, 1) ELSE s.geom END"


def _retire(cur, target: str, county: str, network: str | None, keep: int) -> list[int]:
    """Mark the current rows of one scope not current; return the deliveries they belonged to."""
    table = f"cim.{quote_ident(target)}"
    net_sql, params = ("AND network = %s", (county, keep, network)) if network else ("", (county, keep))
    cur.execute(f"WITH u AS (UPDATE {table} SET is_current = false WHERE county_code = %s AND is_current "
                f"AND delivery_id IS DISTINCT FROM %s {net_sql} RETURNING delivery_id) "
                f"SELECT DISTINCT delivery_id FROM u WHERE delivery_id IS NOT NULL", params)
    return [r[0] for r in cur.fetchall()]


def _swap(cur, delivery_id: int, county: str, scope_list: list[str], copied: dict[str, list[str]]) -> list[int]:
    """Retire the scopes' current rows and insert the staged rows as current.

    Only columns some batch delivered are inserted; where a batch left such a column empty and
    the table declares a default, the default applies.
    """
    touched: set[int] = set()
    for scope in scope_list:
        target, network = _split_scope(scope)
        touched.update(_retire(cur, target, county, network, delivery_id))
    for target in ORDER:
        if target not in copied:
            continue
        defaults = _column_defaults(cur, target)
        staged = [c for c in copied[target] if c != "geom"]
        cols = ", ".join(quote_ident(c) for c in staged)
        scols = ", ".join(f"COALESCE(s.{quote_ident(c)}, {defaults[c].replace('%', '%%')})" if c in defaults else "s." + quote_ident(c)
                          for c in staged)
        table, stage = f"cim.{quote_ident(target)}", f"pg_temp.{quote_ident('stage_' + target)}"
        if target == "pipe_segment":
            points = ("(SELECT DISTINCT ON (network, exp_no) id, network, exp_no FROM cim.pipe_point "
                      "WHERE county_code = %(county)s AND is_current ORDER BY network, exp_no, id)")
            cur.execute(
                f"INSERT INTO {table} ({cols}, county_code, delivery_id, is_current, start_point_id, end_point_id, geom) "
                f"SELECT {scols}, %(county)s, %(delivery)s, true, p1.id, p2.id, {_geom_expr(target)} "
                f"FROM {stage} s LEFT JOIN {points} p1 ON p1.network = s.network AND p1.exp_no = s.start_exp_no "
                f"LEFT JOIN {points} p2 ON p2.network = s.network AND p2.exp_no = s.end_exp_no",
                {"county": county, "delivery": delivery_id})
        else:
            cur.execute(f"INSERT INTO {table} ({cols}, county_code, delivery_id, is_current, geom) "
                        f"SELECT {scols}, %(county)s, %(delivery)s, true, {_geom_expr(target)} FROM {stage} s",
                        {"county": county, "delivery": delivery_id})
    return _settle(cur, touched)


def _settle(cur, delivery_ids: set[int]) -> list[int]:
    """Deliveries among ``delivery_ids`` left without current rows become ``superseded``."""
    if not delivery_ids:
        return []
    alive = " OR ".join(f"EXISTS (SELECT 1 FROM cim.{quote_ident(t)} x WHERE x.delivery_id = d.id AND x.is_current)"
                        for t in TARGETS)
    cur.execute(f"UPDATE cim.delivery d SET state = 'superseded' WHERE d.id = ANY(%s) AND d.state = 'current' "
                f"AND NOT ({alive}) RETURNING d.id", (sorted(delivery_ids),))
    return sorted(r[0] for r in cur.fetchall())


# --- rejected deliveries, restore, listing --------------------------------------------------------

def record_rejected(conn: psycopg2.extensions.connection, report: Report, *, principal: auth.Principal,
                    county: str | None = None, client_addr: str | None = None) -> int:
    """Keep a rejected delivery in the history (state ``rejected``, no feature rows); audited."""
    d = report.delivery
    county = county or d.county_code or "000000"
    errors = sum(f.severity.value == "error" for f in report.findings)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO cim.delivery (county_code, file_name, sha256, size_bytes, profile, layers, source_crs, "
            "encoding, counts, state, submitted_by, finished_at, message) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, 'rejected', %s, now(), %s) RETURNING id",
            (county, d.file_name, d.sha256, d.size_bytes, _joined([b.profile_id for b in d.batches]),
             sorted({b.target for b in d.batches}), _joined([b.source_crs for b in d.batches]),
             _joined([b.encoding for b in d.batches]), _json(d.counts()), principal.name,
             f"{errors} errors / 个错误"))
        did = cur.fetchone()[0]
        auth.audit(cur, principal, "ingest.reject", target=f"delivery:{did}", county=county,
                   client_addr=client_addr, detail={"file": d.file_name, "sha256": d.sha256, "errors": errors})
    conn.commit()
    return did


def restore(conn: psycopg2.extensions.connection, delivery_id: int, *, principal: auth.Principal,
            client_addr: str | None = None) -> LoadResult:
    """Make an earlier delivery current again for its scopes, in one transaction (audited)."""
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = 0")
            rows = fetch_dicts(cur, "SELECT id, county_code, state, layers, counts FROM cim.delivery WHERE id = %s",
                               (delivery_id,))
            if not rows:
                raise NotFound(f"没有成果 {delivery_id}", f"no delivery {delivery_id}")
            d = rows[0]
            auth.authorize(principal, auth.Action.write, county=d["county_code"])
            if d["state"] not in ("current", "superseded"):
                raise Conflict(f"成果 {delivery_id} 状态为 {d['state']}，无法恢复",
                               f"delivery {delivery_id} is {d['state']} and cannot be restored")
            _lock_county(cur, d["county_code"])
            touched: set[int] = set()
            for scope in d["layers"]:
                target, network = _split_scope(scope)
                touched.update(_retire(cur, target, d["county_code"], network, delivery_id))
                net_sql, params = ("AND network = %s", (delivery_id, network)) if network else ("", (delivery_id,))
                cur.execute(f"UPDATE cim.{quote_ident(target)} SET is_current = true "
                            f"WHERE delivery_id = %s AND NOT is_current {net_sql}", params)
            cur.execute("UPDATE cim.delivery SET state = 'current' WHERE id = %s", (delivery_id,))
            superseded = _settle(cur, touched - {delivery_id})
            auth.audit(cur, principal, "ingest.restore", target=f"delivery:{delivery_id}",
                       county=d["county_code"], client_addr=client_addr,
                       detail={"scopes": d["layers"], "superseded": superseded})
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return LoadResult(delivery_id, "current", dict(d["counts"] or {}), list(d["layers"]), superseded, None,
                      f"已恢复成果 {delivery_id}", f"restored delivery {delivery_id}")


def list_deliveries(cur: psycopg2.extensions.cursor, county: str | None = None, limit: int = 100) -> list[dict]:
    """Deliveries, newest first (optionally of one county)."""
    return fetch_dicts(
        cur, "SELECT id, county_code, file_name, sha256, state, layers, counts, profile, source_crs, encoding, "
             "submitted_by, submitted_at, finished_at, message FROM cim.delivery "
             "WHERE %(county)s::text IS NULL OR county_code = %(county)s ORDER BY id DESC LIMIT %(limit)s",
        {"county": county, "limit": limit})

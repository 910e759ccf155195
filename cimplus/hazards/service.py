"""The hazard ledger as one service object: built once from the settings (the API keeps one in
``app.state``, the CLI makes one per command), one public method per question, no HTTP.

Ledger records go through the ORM (SQLAlchemy sessions on a small pool of this service);
scans use a plain psycopg2 connection and set-based SQL (:mod:`scan`).
"""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from cim import auth, db, tasks
from cim.auth import Action, Principal
from cim.errors import InvalidInput, NotFound
from cim.settings import Settings
from cim.tasks import TaskContext
from cimplus.hazards import attachments, config, export, query, scan, workflow

TASK_KIND = "hazards.scan"


class HazardService:
    """The ledger: reads, registration, workflow, attachments, exports, scans."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.timezone = settings.hazards.timezone
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None

    # --- plumbing ----------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The ORM's engine (created on first use; connections through :func:`cim.db.connect`)."""
        if self._engine is None:
            self._engine = create_engine("postgresql+psycopg2://", pool_size=4, max_overflow=4, pool_pre_ping=True,
                                         creator=lambda: db.connect(self.settings.db, application_name="cim-hazards"))
            self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        return self._engine

    def session(self) -> Session:
        """A new ORM session (use as a context manager)."""
        self.engine  # noqa: B018 - creates the session factory
        assert self._sessions is not None
        return self._sessions()

    @property
    def attachments_dir(self) -> Path:
        """Where attachment files are stored."""
        return self.settings.hazards.attachments_dir or self.settings.db.home_dir / "hazards" / "attachments"

    def close(self) -> None:
        """Release the pool."""
        if self._engine is not None:
            self._engine.dispose()

    # --- reads -------------------------------------------------------------------------

    def vocabulary(self) -> dict[str, Any]:
        """Codes and labels, the workflow matrix and the rules (for clients)."""
        rules = config.rules()
        return {**config.ledger().vocabulary(),
                "rules": {r.id: {"name_zh": r.name_zh, "name_en": r.name_en, "facility_type": r.facility_type,
                                 "hazard_class": r.hazard_class, "risk_level": r.risk_level, "clause": r.clause,
                                 "tag": r.tag, "enabled": r.enabled} for r in rules.rules.values()}}

    def list(self, params: dict[str, Any], *, limit: int = 100, cursor: int | None = None,
             base_url: str = "/api/hazards") -> dict[str, Any]:
        """A page of entries as GeoJSON (``params``: the filters of :meth:`query.Filters.parse`)."""
        if not 1 <= limit <= self.settings.hazards.page_max:
            raise InvalidInput(f"limit 须在 1–{self.settings.hazards.page_max} 之间",
                               f"limit must be 1–{self.settings.hazards.page_max}")
        filters = query.Filters.parse(**params)
        with self.session() as s:
            return query.list_geojson(s, filters, limit=limit, cursor=cursor, timezone=self.timezone, base_url=base_url)

    def get(self, hazard_id: int, who: Principal | None = None, base_url: str = "/api/hazards") -> dict[str, Any]:
        """One entry in full (events, attachments, evidence, the caller's allowed actions)."""
        with self.session() as s:
            return query.get(s, hazard_id, timezone=self.timezone, who=who, base_url=base_url)

    def stats(self, params: dict[str, Any]) -> dict[str, Any]:
        """Counts by status × facility type × admin area, with 逾期."""
        filters = query.Filters.parse(**params)
        with self.session() as s:
            return query.stats(s, filters, timezone=self.timezone)

    def export_xlsx(self, params: dict[str, Any]) -> bytes:
        """The ledger workbook."""
        filters = query.Filters.parse(**params)
        with self.session() as s:
            return export.xlsx(s, filters, self.timezone)

    def export_html(self, params: dict[str, Any]) -> str:
        """The printable ledger."""
        filters = query.Filters.parse(**params)
        with self.session() as s:
            return export.html(s, filters, self.timezone)

    # --- writes ------------------------------------------------------------------------

    def _describe(self, s: Session, who: Principal | None):
        return lambda h: query.entry(s, h, timezone=self.timezone, who=who, full=False)

    def register(self, who: Principal, data: Any, client_addr: str | None = None) -> dict[str, Any]:
        """Manual registration; returns the new entry in full."""
        with self.session() as s:
            h = workflow.register(s, who, data, timezone=self.timezone, client_addr=client_addr)
            hid = h.id
        return self.get(hid, who)

    def transition(self, who: Principal, hazard_id: int, body: Any, client_addr: str | None = None) -> dict[str, Any]:
        """One workflow action (``body``: action, version, comment, fields); returns the entry."""
        if not isinstance(body, dict):
            raise InvalidInput("请求体须为 JSON 对象", "the body must be a JSON object")
        unknown = sorted(set(body) - {"action", "version", "comment", "fields"})
        if unknown:
            raise InvalidInput(f"未知的请求字段 {unknown}", f"unknown body members {unknown}")
        fields = body.get("fields") or {}
        if not isinstance(fields, dict):
            raise InvalidInput("fields 须为对象", "fields must be an object")
        with self.session() as s:
            workflow.transition(s, who, hazard_id, body.get("action"), body.get("version"), comment=body.get("comment"),
                                fields=fields, timezone=self.timezone, client_addr=client_addr,
                                describe=self._describe(s, who))
        return self.get(hazard_id, who)

    def add_attachment(self, who: Principal, hazard_id: int, stream: BinaryIO, *, kind: str, file_name: str | None,
                       caption: str | None, client_addr: str | None = None) -> dict[str, Any]:
        """Store an uploaded file and attach it; returns the attachment's record. The entry, the
        caller's access and the kind and caption are checked before the file is stored."""
        with self.session() as s:
            h = workflow.load(s, hazard_id)
            auth.authorize(who, Action.report, county=h.county_code)
        attachments.check_fields(kind, caption)
        limit = int(self.settings.hazards.attachment_max_mb * (1 << 20))
        stored = attachments.store(self.attachments_dir, stream, limit)
        with self.session() as s:
            att = attachments.add(s, who, hazard_id, stored, kind=kind, file_name=file_name, caption=caption,
                                  client_addr=client_addr)
            return {"id": att.id, "hazard_id": hazard_id, "kind": att.kind, "sha256": att.sha256,
                    "media_type": att.media_type, "size_bytes": att.size_bytes, "file_name": att.file_name,
                    "caption": att.caption, "href": f"/api/hazards/{hazard_id}/attachments/{att.id}"}

    def attachment(self, hazard_id: int, attachment_id: int) -> tuple[Path, str, str]:
        """(path, media type, file name) of a stored attachment."""
        with self.session() as s:
            path, att = attachments.locate(s, self.attachments_dir, hazard_id, attachment_id)
            return path, att.media_type, att.file_name

    # --- scans -------------------------------------------------------------------------

    # ``builtins.list``: inside this class ``list`` names the method :meth:`list`
    def run_scan(self, county: str, *, rule_ids: builtins.list[str] | None = None, dry_run: bool = False,
                 incremental: bool = False, delivery_id: int | None = None, actor: str = "system") -> scan.ScanReport:
        """Scan one county now (see :func:`cimplus.hazards.scan.scan`)."""
        conn = db.connect(self.settings.db, application_name="cim-hazards-scan")
        try:
            return scan.scan(conn, county, rule_ids=rule_ids, dry_run=dry_run, incremental=incremental,
                             delivery_id=delivery_id, actor=actor, timezone=self.timezone,
                             timeout_s=self.settings.hazards.scan_timeout_s, workers=self.settings.hazards.scan_workers,
                             connect=lambda: db.connect(self.settings.db, application_name="cim-hazards-scan"))
        finally:
            conn.close()

    def audit_scan(self, who: Principal, report: scan.ScanReport, client_addr: str | None = None) -> None:
        """Record a scan someone ran (CLI) in the audit log."""
        conn = db.connect(self.settings.db, application_name="cim-hazards")
        try:
            with db.transaction(conn) as cur:
                auth.audit(cur, who, "hazard.scan", target=f"hazard_scan:{report.scan_id}", county=report.county,
                           client_addr=client_addr, detail={"totals": report.totals(), "incremental": report.incremental})
        finally:
            conn.close()

    def queue_scan(self, who: Principal, body: Any, client_addr: str | None = None) -> dict[str, Any]:
        """Queue a background scan of a county (``accept`` access for it); returns the task id."""
        if not isinstance(body, dict):
            raise InvalidInput("请求体须为 JSON 对象", "the body must be a JSON object")
        unknown = sorted(set(body) - {"county", "rules", "incremental"})
        if unknown:
            raise InvalidInput(f"未知的请求字段 {unknown}", f"unknown body members {unknown}")
        county = body.get("county")
        if not (isinstance(county, str) and county.isdigit() and len(county) == 6):
            raise InvalidInput("county 须为 6 位县级行政区代码", "county must be a 6-digit county code")
        rules = body.get("rules") or []
        if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
            raise InvalidInput("rules 须为规则编号列表", "rules must be a list of rule ids")
        rule_ids = [r.id for r in scan.select_rules(rules)] if rules else []
        incremental = body.get("incremental", False)
        if not isinstance(incremental, bool):
            raise InvalidInput("incremental 须为 true 或 false", "incremental must be true or false")
        auth.authorize(who, Action.accept, county=county)
        args = {"county": county, "rules": rule_ids, "incremental": incremental}
        conn = db.connect(self.settings.db, application_name="cim-hazards")
        try:
            with db.transaction(conn) as cur:
                task_id = tasks.enqueue(cur, TASK_KIND, args, created_by=who.name,
                                        dedupe_key=f"{TASK_KIND}:{county}:{'full' if not incremental else 'inc'}:"
                                                   f"{','.join(rule_ids) or 'all'}")
                auth.audit(cur, who, "hazard.scan.queue", target=f"task:{task_id}", county=county,
                           client_addr=client_addr, detail=args)
        finally:
            conn.close()
        return {"task_id": task_id, "status_url": f"/api/tasks/{task_id}", "args": args}

    def scan_task(self, ctx: TaskContext) -> dict[str, Any]:
        """Handler of ``hazards.scan`` tasks: a county rescan after a delivery (args ``county``,
        ``delivery_id``: incremental) or one asked for (``county``, ``rules``, ``incremental``)."""
        args = ctx.args
        county = str(args.get("county") or "")
        incremental = bool(args.get("incremental", "delivery_id" in args))
        ctx.progress(1, f"扫描 {county} / scanning {county}")
        try:
            report = self.run_scan(county, rule_ids=list(args.get("rules") or []) or None, incremental=incremental,
                                   delivery_id=args.get("delivery_id"), actor=f"task:{ctx.task.id}")
        except NotFound as exc:
            if "delivery_id" not in args:
                raise
            # a delivery of layers no rule reads (green space, streetlights …) in a county without pipes or buildings
            return {"county": county, "skipped": exc.en}
        return json.loads(json.dumps(report.to_dict(), default=str))

"""Hazard scans of every county as Dask tasks, one per county.

Each task is :meth:`cimplus.hazards.service.HazardService.run_scan` (the function ``cim hazards
scan`` calls) on the worker, with the client's database and hazard settings (the database URL
resolved on the client travels with them) and, unless a dry run, the scan's audit record as the
CLI writes it. A scan is one transaction per county, serialised per county by the scan's own
advisory lock, so counties run side by side and the ledger is the one the CLI leaves, county by
county.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batch import counties as county_jobs
from cim import auth, db
from cim.errors import NotFound
from cim.settings import DatabaseSettings, HazardSettings, Settings
from cimplus.hazards import scan
from cimplus.hazards.service import HazardService


def scan_county(db_settings: DatabaseSettings, hazards: HazardSettings, rule_ids: list[str] | None, dry_run: bool,
                incremental: bool, who: auth.Principal, county: str) -> county_jobs.CountyResult:
    """The Dask task: scan one county (and audit it unless ``dry_run``); the report or the error."""
    def go() -> scan.ScanReport:
        svc = HazardService(Settings(db=db_settings, hazards=hazards))
        try:
            report = svc.run_scan(county, rule_ids=rule_ids, dry_run=dry_run, incremental=incremental, actor=who.name)
            if not dry_run:
                svc.audit_scan(who, report)
            return report
        finally:
            svc.close()

    return county_jobs.guarded(county, go)


def plan(db_settings: DatabaseSettings, wanted: list[str] | None, rule_ids: list[str] | None) -> list[str]:
    """The counties to scan: ``wanted`` (each must have current data) or every county with data;
    the rules are checked here, before any task starts."""
    scan.select_rules(rule_ids)
    county_jobs.check_codes(wanted)
    conn = db.connect(db_settings, application_name="cim-batch")
    try:
        with conn.cursor() as cur:
            have = scan.counties(cur)
    finally:
        conn.rollback()
        conn.close()
    if not wanted:
        if not have:
            raise NotFound("没有有现势数据的县", "no county has current data")
        return have
    missing = [c for c in dict.fromkeys(wanted) if c not in have]
    if missing:
        raise NotFound(f"行政区 {','.join(missing)} 没有现势数据", f"county {','.join(missing)} has no current data")
    return list(dict.fromkeys(wanted))


def run(client: Any, db_settings: DatabaseSettings, hazards: HazardSettings, counties: list[str], *,
        rule_ids: list[str] | None = None, dry_run: bool = False, incremental: bool = False,
        who: auth.Principal, progress: Callable[[int, int], None] | None = None) -> list[county_jobs.CountyResult]:
    """Scan ``counties`` on the cluster of ``client``, one task each; results in county order."""
    url = db.resolve_url(db_settings)
    shipped = db_settings.model_copy(update={"database_url": url})
    return county_jobs.run(client, scan_county, counties, shipped, hazards, rule_ids, dry_run, incremental, who,
                           progress=progress)

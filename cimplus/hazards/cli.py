"""``cim hazards``: scan counties, list the ledger, export it.

Exit codes: 0 ok, 1 rejected (e.g. a county without data), 2 unusable input or environment.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated

import typer

from cim import auth
from cim.errors import CimError, InvalidInput
from cim.settings import load

app = typer.Typer(help="风险隐患台账 / hazard ledger: scan, list, export", no_args_is_help=True)
_COUNTS = ("new", "updated", "unchanged", "cleared")


def _fail(exc: CimError, code: int = 2) -> None:
    typer.echo(f"错误 / error [{exc.code}]: {exc.zh}\n  {exc.en}", err=True)
    raise typer.Exit(code)


def _principal() -> auth.Principal:
    return auth.Principal(name=f"cli:{getpass.getuser()}", role=auth.Role.admin)


def _service():
    from cimplus.hazards.service import HazardService
    return HazardService(load())


@app.command("scan")
def scan_cmd(
    county: Annotated[list[str] | None, typer.Option("--county", help="县级代码（可重复；默认：全部有现势数据的县）")] = None,
    rule: Annotated[list[str] | None, typer.Option("--rule", help="规则编号（可重复；默认全部启用的规则）")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="只统计，不写入台账")] = False,
    incremental: Annotated[bool, typer.Option("--incremental", help="只评估各规则上次扫描后变化的部分")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run the automatic rules; print new / updated / unchanged / cleared per rule."""
    from cim import db
    from cimplus.hazards import scan as scan_mod

    who = _principal()
    try:
        svc = _service()
        if county:
            codes = county
        else:
            conn = db.connect(svc.settings.db)
            try:
                with conn.cursor() as cur:
                    codes = scan_mod.counties(cur)
            finally:
                conn.close()
        scan_mod.select_rules(rule)
        reports = []
        for code in codes:
            report = svc.run_scan(code, rule_ids=rule, dry_run=dry_run, incremental=incremental, actor=who.name)
            if not dry_run:
                svc.audit_scan(who, report)
            reports.append(report)
    except CimError as exc:
        _fail(exc, 1 if exc.code == "not_found" else 2)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in reports], ensure_ascii=False, default=str))
        return
    from cimplus.hazards import config
    rules = config.rules().rules
    for r in reports:
        typer.echo(f"{r.county}{'（试运行，未写入 / dry run, nothing written）' if dry_run else ''}  {r.seconds:.1f} s")
        typer.echo(f"  {'规则':<5} {'方式':<6} {'new':>7} {'updated':>8} {'unchanged':>10} {'cleared':>8}  名称")
        for rid, c in r.rules.items():
            typer.echo(f"  {rid:<7} {c.mode:<6} {c.new:>7} {c.updated:>8} {c.unchanged:>10} {c.cleared:>8}  "
                       f"{rules[rid].name_zh}")
        t = r.totals()
        typer.echo(f"  {'合计':<5} {'':<6} {t['new']:>7} {t['updated']:>8} {t['unchanged']:>10} {t['cleared']:>8}")


def _params(county, status, rule, facility_type, overdue) -> dict:
    return {"county": ",".join(county or []) or None, "status": ",".join(status or []) or None,
            "rule": ",".join(rule or []) or None, "facility_type": ",".join(facility_type or []) or None,
            "overdue": None if overdue is None else str(overdue).lower()}


CountyOpt = Annotated[list[str] | None, typer.Option("--county", help="行政区代码（可重复）")]
StatusOpt = Annotated[list[str] | None, typer.Option("--status", help="状态（可重复；open = 未销号）")]
RuleOpt = Annotated[list[str] | None, typer.Option("--rule", help="规则编号（可重复）")]
TypeOpt = Annotated[list[str] | None, typer.Option("--facility-type", help="设施类型（可重复）")]
OverdueOpt = Annotated[bool | None, typer.Option("--overdue/--not-overdue", help="只看逾期 / 未逾期")]


@app.command("list")
def list_cmd(county: CountyOpt = None, status: StatusOpt = None, rule: RuleOpt = None, facility_type: TypeOpt = None,
             overdue: OverdueOpt = None, limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
             as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List ledger entries, newest first."""
    try:
        page = _service().list(_params(county, status, rule, facility_type, overdue), limit=limit)
    except CimError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(page, ensure_ascii=False, default=str))
        return
    typer.echo(f"共 {page['numberMatched']} 条 / {page['numberMatched']} entries (showing {page['numberReturned']})")
    for f in page["features"]:
        p = f["properties"]
        flag = " 逾期" if p["overdue"] else ""
        typer.echo(f"{p['number']:<20} {p['status_zh']:<4} {p['risk_level_zh']}{p['risk_colour_zh']} "
                   f"{p['facility_type_zh']:<8} {p['deadline'] or '-':<10}{flag}  {p['title']}")


@app.command("export")
def export_cmd(out: Annotated[Path, typer.Option("--out", help="输出文件 .xlsx 或 .html")],
               county: CountyOpt = None, status: StatusOpt = None, rule: RuleOpt = None,
               facility_type: TypeOpt = None, overdue: OverdueOpt = None) -> None:
    """Export the ledger: xlsx in 台账 layout, or printable HTML (by the file's suffix)."""
    try:
        suffix = out.suffix.lower()
        if suffix not in (".xlsx", ".html", ".htm"):
            raise InvalidInput("输出文件须以 .xlsx 或 .html 结尾", "the output file must end in .xlsx or .html")
        svc = _service()
        params = _params(county, status, rule, facility_type, overdue)
        if suffix == ".xlsx":
            out.write_bytes(svc.export_xlsx(params))
        else:
            out.write_text(svc.export_html(params), encoding="utf-8")
    except CimError as exc:
        _fail(exc)
    except OSError as exc:
        typer.echo(f"错误 / error: 无法写入 {out}: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"已导出 / exported {out}")

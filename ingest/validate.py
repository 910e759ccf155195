"""Validate a delivery: every rule of ``ingest/rules.yaml`` on every batch → :class:`Report`.

Rule ids and severities follow domain.md §2.13 (error rejects the delivery, warning loads and
flags). All rules work on whole columns (pandas / numpy / shapely 2).
"""

from __future__ import annotations

from pathlib import Path

from ingest.mapping.normalize import load_dictionaries
from ingest.model import Delivery, Report
from ingest.validation.clearance import check_clearance, check_parallel, with_loaded
from ingest.validation.core import Ctx, load_rules
from ingest.validation.drainage import check_drainage
from ingest.validation.existing import check_existing
from ingest.validation.fields import check_fields
from ingest.validation.geometry import check_buildings, check_geometry, check_inside_county, county_boundary
from ingest.validation.network import check_network, gather


def validate(delivery: Delivery, conn=None, *, rules_path: Path | str | None = None) -> Report:
    """Check a delivery and return its report (findings sorted by severity, rule, layer, row).

    ``conn`` (psycopg2, optional) enables the county-boundary check against loaded admin
    areas, the dictionaries as stored in the database and the duplicate check against loaded
    features.
    """
    ctx = Ctx(delivery, load_rules(str(rules_path) if rules_path else None), load_dictionaries(conn), conn)
    for batch in delivery.batches:
        check_fields(ctx, batch)
        check_geometry(ctx, batch)
        if batch.target == "building":
            check_buildings(ctx, batch)
    check_inside_county(ctx, county_boundary(ctx))
    net = gather(delivery.batches)
    if net is not None:
        ends = check_network(ctx, net)
        if ends is not None:
            check_drainage(ctx, net, ends)
        near = with_loaded(ctx, net)
        check_clearance(ctx, net, near)
        check_parallel(ctx, net, near)
    for batch in delivery.batches:
        check_existing(ctx, batch)
    order = {"error": 0, "warning": 1, "info": 2}
    ctx.report.findings.sort(key=lambda f: (order[f.severity.value], f.rule_id, f.source_layer, f.row or 0))
    return ctx.report

"""The features behind a value: the very buildings, pipes or lights an indicator counted in an area.

The ``features`` template of the definition the run used is evaluated for the one area against
the current data (through the stored membership when it is current), and the features come back as ids (for a filter on the vector tiles, whose
feature ids are the same) and as GeoJSON built in SQL with the layer's attributes. When the data
of the layer (or, for a definition reading the hazard ledger, of the ledger) changed since the run,
the answer says so (``data_changed``): the run keeps its numbers, the map shows today's features.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg2.extensions

from cim import versions
from cim.errors import InvalidInput, NotFound
from cimplus.healthcheck import areas, history, membership
from cimplus.healthcheck.catalog import Catalogue, Indicator
from cimplus.healthcheck.template import Expander, ledger_present
from layers.catalog import Catalog
from layers.sqlbuild import feature_sql, table_sql

MAX_FEATURES = 5000


def features(conn: psycopg2.extensions.connection, layers: Catalog, catalogue: Catalogue, run_id: int,
             indicator: str, area_code: str, *, limit: int = MAX_FEATURES, geometry: bool = True) -> dict[str, Any]:
    """``{layer, ids, count, truncated, cql2, data_changed, features}`` for one indicator and area."""
    limit = max(1, min(int(limit), MAX_FEATURES))
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # temp tables: not READ ONLY
            run = history.get_run(cur, run_id)
            definition = (run["catalogue"] or {}).get(indicator)
            if definition is None:
                raise NotFound(f"体检运行 {run_id} 没有指标 {indicator}", f"run {run_id} has no indicator {indicator}")
            ind = Indicator.model_validate({k: v for k, v in definition.items()})
            if not ind.features or not ind.layer:
                raise InvalidInput(f"指标 {indicator} 不是由具体要素统计而来，无要素清单",
                                   f"indicator {indicator} is not a count of features: there is no list to show")
            cur.execute("SELECT area_level FROM cim.healthcheck_value WHERE run_id = %s AND indicator = %s AND area_code = %s",
                        (run_id, indicator, area_code))
            found = cur.fetchone()
            if found is None:
                raise NotFound(f"体检运行 {run_id} 没有区域 {area_code}", f"run {run_id} has no area {area_code}")
            spec = layers.get(ind.layer)
            area_set = areas.prepare(cur, list(run["counties"]), [found[0]], int(run["year"]), only_code=area_code)
            present, _ = ledger_present(cur, catalogue.hazard_ledger)
            single = Catalogue.model_validate({**catalogue.model_dump(), "indicators": [definition], "params": {}})
            part_sets, _ = membership.usable(cur, area_set, membership.sources([ind], layers))
            scope = area_set.scope(int(run["year"]), present, part_sets)
            stmt = Expander(layers, single, scope).expand(ind.features, ind)
            area_set.ensure(cur, stmt.needs)
            cur.execute(f"SELECT DISTINCT f.feature_id FROM ({stmt.sql}) f ORDER BY 1 LIMIT %(_limit)s",
                        {**stmt.params, "_limit": limit + 1})
            ids = [int(r[0]) for r in cur.fetchall()]
            truncated = len(ids) > limit
            ids = ids[:limit]
            collection = None
            if geometry:
                cur.execute(f"SELECT {feature_sql(spec, 't.' + spec.geometry.column, spec.attributes)} "
                            f"FROM {table_sql(spec)} t WHERE t.id = ANY(%s) ORDER BY t.id", (ids,))
                collection = {"type": "FeatureCollection",
                              "features": [json.loads(r[0]) for r in cur.fetchall()]}
            keys = list(spec.version_keys)
            if present and catalogue.hazard_ledger and "{hazard_ledger}" in ind.features:
                keys.append(catalogue.hazard_ledger.version_key)     # the ledger's entries decide too
            now = versions.read(cur, keys)
    finally:
        conn.rollback()
    then = run.get("data_versions") or {}
    changed = any(then.get(k) is not None and then.get(k) != v for k, v in now.items())
    return {"run_id": run_id, "indicator": indicator, "area_code": area_code, "layer": spec.id, "ids": ids,
            "count": len(ids), "truncated": truncated, "cql2": ind.cql2, "data_changed": changed,
            "features": collection}

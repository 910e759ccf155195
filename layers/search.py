"""Text search over the searchable attributes of the public layers (building codes, names,
addresses, survey point numbers, pole numbers, admin names).

Case-insensitive contains match, prefix matches first, then shorter values; the pattern is
bound with ``%`` and ``_`` escaped (:func:`layers.query.search_sql`). Each result carries its
bbox and a point on the feature to fly to.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from cim import dbcall
from cim.errors import InvalidInput
from layers import query as lq
from layers.spec import LayerSpec

MAX_QUERY_CHARS = 100


def clean_query(q: str) -> str:
    """The search text without surrounding blanks; InvalidInput unless 1–100 characters."""
    text = q.strip()
    if not 1 <= len(text) <= MAX_QUERY_CHARS:
        raise InvalidInput(f"q 须为 1–{MAX_QUERY_CHARS} 个字符", f"q must be 1 to {MAX_QUERY_CHARS} characters")
    return text


async def search(pool: asyncpg.Pool, specs: Sequence[LayerSpec], q: str, limit: int) -> list[dict]:
    """At most ``limit`` features of ``specs`` whose searchable attributes contain ``q``.

    Each result: ``{layer, layer_title_zh, id, label, match_field, value, bbox, center}``. A row
    in several layers (e.g. a drainage node also in pipeline_points) is listed once, under the
    most specific layer (one with a ``where``).
    """
    text = clean_query(q)
    sql, args = lq.search_sql(list(specs), text, limit)
    if not sql:
        return []
    rows = await dbcall.run(pool, "fetch", sql, *args)
    by_id = {s.id: s for s in specs}
    rows = sorted(rows, key=lambda r: (r["rank"], len(r["value"] or ""), not by_id[r["layer"]].where, r["layer"], r["id"]))
    seen: set[tuple[str, int]] = set()
    results: list[dict] = []
    for r in rows:
        spec = by_id[r["layer"]]
        key = (spec.table, r["id"])
        if key in seen:
            continue
        seen.add(key)
        label = r["value"] if not r["extra"] or r["extra"] == r["value"] else f"{r['value']}（{r['extra']}）"
        results.append({"layer": spec.id, "layer_title_zh": spec.title_zh, "id": r["id"], "label": label,
                        "match_field": r["match_field"], "value": r["value"],
                        "bbox": [r["w"], r["s"], r["e"], r["n"]], "center": [r["cx"], r["cy"]]})
        if len(results) >= limit:
            break
    return results

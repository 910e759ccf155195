"""Layer statistics behind ``numberMatched`` (layers.items.LayerStats) on the test database."""

from __future__ import annotations

import asyncio

from layers.catalog import load_catalog
from layers.items import LayerStats

CURRENT_BUILDINGS = "SELECT count(*) FROM cim.building WHERE is_current"


def test_requests_arriving_together_share_one_refresh(on_pool, seeded):
    spec = load_catalog().get("buildings")

    async def go(pool):
        stats = LayerStats()
        answers = await asyncio.gather(*(stats.get(pool, spec) for _ in range(8)))
        return answers, await pool.fetchval(CURRENT_BUILDINGS)

    answers, count = on_pool(go)
    assert all(a is answers[0] for a in answers)  # one statement's figures, not eight
    assert answers[0]["rows"] == count and answers[0]["bbox"] is not None


def test_expired_figures_answer_while_one_refresh_runs(on_pool, seeded):
    spec = load_catalog().get("buildings")

    async def go(pool):
        stats = LayerStats()
        first = await stats.get(pool, spec)
        stats.ttl_s = 0.0  # every figure is expired from now on
        during = await asyncio.gather(*(stats.get(pool, spec) for _ in range(8)))
        later = first
        for _ in range(2000):  # until the refresh has landed
            later = await stats.get(pool, spec)
            if later is not first:
                break
            await asyncio.sleep(0.01)
        return first, during, later

    first, during, later = on_pool(go)
    assert all(a is first for a in during)  # answered from memory, nobody waited
    assert later is not first and later["at"] > first["at"]
    assert later["rows"] == first["rows"] and later["bbox"] == first["bbox"]

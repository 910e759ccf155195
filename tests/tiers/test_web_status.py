"""The province's web map in headless Chromium: both counties on one map, the admin-area picker
listing both, and the 下级平台运行状态 panel with their status colours, zooming to a county."""

from __future__ import annotations

import pytest

from cim.tiers import id_base
from tests.tiers.conftest import wait_for
from tests.web.conftest import wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def _rendered_building_ids(page) -> list[int]:
    return page.evaluate("""() => window.cim.map.queryRenderedFeatures()
        .filter((f) => f.layer.metadata && f.layer.metadata['cim:layer'] === 'buildings').map((f) => f.id)""")


def test_lower_tier_status_page_and_one_map(tiers_net, page, artifacts):
    net = tiers_net
    for code in ("430703", "430721"):   # both counties beating again (after the stopped-county test)
        wait_for(lambda code=code: net.province.scalar(
            "SELECT extract(epoch FROM clock_timestamp() - beat_at) < 2 FROM cim.tier_heartbeat WHERE county_code = %s",
            (code,)), 60, f"{code} does not beat")
    page.goto(f"{net.province.api}/#14/29.037/111.700")
    page.wait_for_function("document.body.dataset.ready === 'true'", timeout=60_000)
    wait_idle(page)
    # the one-map draws both counties' buildings: ids from both blocks
    ids = _rendered_building_ids(page)
    for code in ("430703", "430721"):
        assert any(id_base(code) < i < id_base(code) + 10 ** 10 for i in ids), (code, ids[:5])
    # the admin-area picker lists both counties (their polygons came by replication)
    codes = page.locator("#admin-picker option[data-code]").evaluate_all("els => els.map((e) => e.dataset.code)")
    assert {"430703", "430721"} <= set(codes)

    page.locator("#btn-tiers").click()
    page.locator("#tiers-table").wait_for(timeout=20_000)
    for code in ("430703", "430721"):
        page.locator(f'tr.tier-row[data-code="{code}"][data-status="green"]').wait_for(timeout=30_000)
    panel = page.locator("#panel-body").inner_text()
    assert "湖南省" in panel and "鼎城区" in panel and "安乡县" in panel and "县级" in panel
    assert "正常 2" in panel and "异常 0" in panel
    last = net.b.scalar("SELECT max(id) FROM cim.delivery WHERE state = 'current'")
    assert f"#{last}" in page.locator('tr.tier-row[data-code="430721"]').inner_text()
    page.screenshot(path=str(artifacts / "tiers-status.png"))

    # a row zooms the map to its county
    page.locator('tr.tier-row[data-code="430721"]').click()
    page.wait_for_function("""() => { const c = window.cim.map.getCenter();
        return c.lng > 111.70 && c.lng < 111.72 && c.lat > 29.03 && c.lat < 29.05 && !window.cim.map.isMoving(); }""",
                           timeout=20_000)
    wait_idle(page)
    assert any(id_base("430721") < i < id_base("430721") + 10 ** 10 for i in _rendered_building_ids(page))

    # English labels on the language switch, the panel redrawn in place
    page.locator("#btn-lang").click()
    page.locator("#panel-title").filter(has_text="Lower-tier running status").wait_for(timeout=10_000)
    assert "Last heartbeat" in page.locator("#tiers-table").inner_text()
    assert page.errors == [], (page.errors, page.failed)

"""When an endpoint is not (yet) in the API the map keeps working and says so in both languages."""

from __future__ import annotations

import pytest

from tests.web.conftest import click_lonlat, open_map

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_missing_endpoints_give_bilingual_notices(page, partial_server, artifacts):
    assert not partial_server.has("POST", "/api/query/identify")
    open_map(page, partial_server)
    # the 2D map still loads and draws from the style and tiles
    assert "房屋建筑" in page.locator("#layertree").inner_text()
    click_lonlat(page, 111.4994, 27.20098)
    notice = page.locator("#notices .notice.error").first
    notice.wait_for(timeout=20_000)
    assert "服务端尚未提供此功能" in notice.inner_text() and "/api/query/identify" in notice.inner_text()
    page.locator("#search-input").fill("幸福")
    page.locator("#search-input").press("Enter")
    page.locator("#notices .notice.error", has_text="/api/search").wait_for(timeout=20_000)
    # the same message in English after the switch
    page.locator("#btn-lang").click()
    click_lonlat(page, 111.4994, 27.20098)
    page.locator("#notices .notice.error", has_text="The server does not provide this yet").wait_for(timeout=20_000)
    page.locator("#btn-upload").click()
    page.locator("#upload-progress", has_text="does not provide this yet").wait_for(timeout=20_000)
    page.screenshot(path=str(artifacts / "web_degraded.png"))
    # nothing threw in the page (404s of the missing routes are the only console errors)
    assert [e for e in page.errors if "status of 404" not in e and "status of 405" not in e] == []

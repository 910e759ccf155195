"""The mapping step of the upload panel in headless Chromium: a dry run of a building delivery
whose fields no profile knows (层, 字段X) and whose JZND (a 建造年代 alias) holds free text shows
the mapping table; the user sets the targets and a value mapping (砖木 → TM), sets JZND to
"not mapped", re-checks, confirms the load; the buildings are loaded with the mapped values,
without an era, and the mapping is saved as the county's, the refused field included.

The delivery is written here (EPSG:4490 shapefile) into the upload-test county 990003."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import psycopg2
import pytest
import testkit
from shapely.geometry import box

from cim.auth import Role, create_token
from tests.web.conftest import open_map, submit_upload

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
COUNTY = "990003"
FINAL = "['awaiting_confirmation', 'rejected', 'failed', 'done']"


def _delivery(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"编号": f"WM-{i}", "层": 3 + i, "字段X": "砖木" if i < 2 else "框架", "JZND": "九十年代"} for i in range(4)]
    geoms = [box(111.550 + i * 0.0004, 27.2150, 111.5502 + i * 0.0004, 27.2152) for i in range(4)]
    gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:4490").to_file(folder / "JZ_buildings.shp", encoding="UTF-8")
    return sorted(str(p) for p in folder.iterdir() if p.stem == "JZ_buildings")


@pytest.fixture(scope="module")
def uploader(web_server) -> str:
    return testkit.token(web_server.db_url, Role.uploader, [COUNTY], name="web mapping test")


def _query(db_url: str, sql: str) -> list[tuple]:
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, (COUNTY,))
            return cur.fetchall()
    finally:
        conn.close()


def _wait_final(page) -> str:
    """The job's final state once the report (with its mapping tables) is shown."""
    page.wait_for_function(f"""() => {{ const s = document.querySelector('#upload-progress .job-state');
        return s && {FINAL}.includes(s.dataset.state); }}""", timeout=120_000)
    state = page.locator("#upload-progress .job-state").get_attribute("data-state")
    assert state != "failed", page.locator("#upload-progress").inner_text()
    page.locator("#upload-mapping").wait_for(timeout=60_000)
    return state


def test_mapping_step_recheck_and_load(page, web_server, uploader, artifacts, tmp_path):
    if not web_server.has("POST", "/api/ingest/{job_id}/recheck"):
        pytest.skip("POST /api/ingest/{job}/recheck is not in the API yet")
    open_map(page, web_server, view="16/27.215/111.551")
    submit_upload(page, uploader, COUNTY, _delivery(tmp_path / "d"))
    assert _wait_final(page) == "rejected"                     # floors and structure are missing
    table = page.locator("#upload-mapping table.mapping")
    assert table.count() == 1 and table.get_attribute("data-layer") == "JZ_buildings"
    row = page.locator("#upload-mapping tr[data-source='层']")
    assert "how-unmapped" in row.get_attribute("class")
    assert row.locator("td.samples").inner_text().startswith("3")
    assert page.locator("#upload-mapping tr[data-source='编号'] select").input_value() == "code"
    era = page.locator("#upload-mapping tr[data-source='JZND']")
    assert "how-alias" in era.get_attribute("class") and era.locator("select").input_value() == "build_era"
    page.locator("#panel").screenshot(path=str(artifacts / "web_upload_mapping_before.png"))

    # the user maps the two fields and one value, then re-checks
    row.locator("select.map-target").select_option("floors_above")
    page.locator("#upload-mapping tr[data-source='字段X'] select.map-target").select_option("structure_type")
    era.locator("select.map-target").select_option("")                      # not the era: leave it out
    new = page.locator("#upload-mapping tr.map-value.how-new").first
    new.locator("select.map-value-column").select_option("structure_type")
    new.locator("input.map-value-value").fill("砖木")
    new.locator("input.map-value-code").fill("TM")
    page.locator("#upload-recheck").click()
    page.wait_for_function("document.querySelector('#upload-progress .job-state')?.dataset.state !== 'rejected'",
                           timeout=60_000)
    assert _wait_final(page) == "awaiting_confirmation", page.locator("#upload-progress").inner_text()
    row = page.locator("#upload-mapping tr[data-source='层']")
    assert "how-user" in row.get_attribute("class") and row.locator("select").input_value() == "floors_above"
    era = page.locator("#upload-mapping tr[data-source='JZND']")
    assert "how-user" in era.get_attribute("class") and era.locator("select").input_value() == ""
    given = page.locator("#upload-mapping tr.map-value.how-user")
    assert given.count() == 1 and "砖木" in given.inner_text()
    page.locator("#panel").screenshot(path=str(artifacts / "web_upload_mapping_after.png"))

    page.locator("#upload-confirm").click()
    page.wait_for_function("document.querySelector('#upload-progress .job-state')?.dataset.state === 'done'",
                           timeout=120_000)
    loaded = _query(web_server.db_url, "SELECT code, floors_above, structure_type, build_era FROM cim.building "
                                       "WHERE county_code = %s AND is_current AND code LIKE 'WM-%%' ORDER BY code")
    assert loaded == [("WM-0", 3, "TM", None), ("WM-1", 4, "TM", None), ("WM-2", 5, "GH", None), ("WM-3", 6, "GH", None)]
    saved = _query(web_server.db_url, "SELECT mapping FROM cim.county_mapping WHERE county_code = %s "
                                      "ORDER BY version DESC LIMIT 1")
    assert saved[0][0]["fields"] == {"层": "floors_above", "字段X": "structure_type", "JZND": ""}
    assert saved[0][0]["values"] == {"structure_type": {"砖木": "TM"}}


def test_mapping_step_maps_a_field_per_layer(page, web_server, uploader, tmp_path):
    """A national boundary dataset (generated inside the upload-test county): 市代码 is the city
    layer's code and the county layer's parent code. The panel sends it per layer
    (LAYER::FIELD), so a re-check with the towns' PAC mapped keeps both layers right."""
    if not web_server.has("POST", "/api/ingest/{job_id}/recheck"):
        pytest.skip("POST /api/ingest/{job}/recheck is not in the API yet")
    from tests.ingest.fixtures import write_national_boundaries

    path = write_national_boundaries(tmp_path / "nb", origin=(111.521, 27.181), size=0.015)
    posted: list[dict] = []
    page.on("request", lambda r: posted.append(r.post_data_json) if r.url.endswith("/recheck") else None)
    open_map(page, web_server, view="13/27.2/111.54")
    submit_upload(page, uploader, COUNTY, str(path))
    assert _wait_final(page) == "rejected"                            # the towns' PAC is no known field

    def select(layer: str, field: str):
        return page.locator(f"#upload-mapping table.mapping[data-layer='{layer}'] tr[data-source='{field}'] select")

    assert select("市级行政区", "市代码").input_value() == "code"
    assert select("县级行政区", "市代码").input_value() == "parent_code"
    select("乡镇街道", "PAC").select_option("code")
    page.locator("#upload-recheck").click()
    page.wait_for_function("document.querySelector('#upload-progress .job-state')?.dataset.state !== 'rejected'",
                           timeout=60_000)
    assert _wait_final(page) == "awaiting_confirmation", page.locator("#upload-progress").inner_text()
    fields = posted[0]["fields"]
    assert fields["PAC"] == "code" and fields["市级行政区::市代码"] == "code"
    assert fields["县级行政区::市代码"] == "parent_code" and "市代码" not in fields
    assert select("市级行政区", "市代码").input_value() == "code"
    assert select("县级行政区", "市代码").input_value() == "parent_code"
    row = page.locator("#upload-mapping table.mapping[data-layer='县级行政区'] tr[data-source='市代码']")
    assert "how-user" in row.get_attribute("class")
    page.locator("#upload-cancel").click()
    page.wait_for_function("document.querySelector('#upload-progress .job-state')?.dataset.state === 'cancelled'",
                           timeout=60_000)

"""The 隐患台账 panel in the browser, from a patrol's registration to 销号.

A patrol inspector registers a hazard through the panel (position picked on the map); the entry
appears in the list, as a symbol of the panel's map layer and in the catalogue layer ``hazards``
(vector tiles); the inspector fixes the 六定 and starts rectification, then submits it for
acceptance; the close action is not offered to the inspector; a supervisor accepts and closes
it. The audit trail shows each step, the database holds one event per step, and the charts
draw from /api/hazards/stats. Real server, real PostGIS, Debian's Chromium.
"""

from __future__ import annotations

import base64

import psycopg2
import pytest

from cim.auth import Role, create_token
from tests.web.conftest import WEB_COUNTY, click_lonlat, open_map, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
SPOT = (111.5150, 27.2150)   # inside the web-test county, away from the seeded features
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


@pytest.fixture(scope="module")
def tokens(web_server) -> dict[str, str]:
    conn = psycopg2.connect(web_server.db_url)
    try:
        with conn.cursor() as cur:
            out = {"inspector": create_token(cur, name="巡查员甲", role=Role.inspector, counties=[WEB_COUNTY]).secret,
                   "supervisor": create_token(cur, name="监管员乙", role=Role.supervisor, counties=[WEB_COUNTY]).secret}
        conn.commit()
    finally:
        conn.close()
    return out


def _use_token(page, token: str) -> None:
    page.locator("#hz-token").fill(token)
    page.locator("#hz-token-use").click()


def _status(page) -> str:
    return page.locator("#hz-d-status").get_attribute("data-status")


def _act(page, action: str, fields: dict[str, str] | None = None, comment: str | None = None) -> None:
    page.locator(f'#hz-actions button[data-action="{action}"]').click()
    form = page.locator(f'form.hz-form[data-action="{action}"]')
    form.wait_for()
    for name, value in (fields or {}).items():
        form.locator(f'[name="{name}"]').fill(value)
    if comment is not None:
        form.locator("#hz-in-comment").fill(comment)
    form.locator("#hz-action-submit").click()


def _wait_status(page, status: str) -> None:
    page.wait_for_function("(s) => document.querySelector('#hz-d-status')?.dataset.status === s", arg=status,
                           timeout=20_000)


def _rendered_numbers(page, layer_filter: str) -> list[str]:
    """Numbers of ledger entries drawn in the 2D map by the style layers the JS filter selects."""
    return page.evaluate(f"""() => {{
        const m = window.cim.map;
        const ids = m.getStyle().layers.filter((l) => {layer_filter}).map((l) => l.id);
        return m.queryRenderedFeatures({{ layers: ids }}).map((f) => f.properties.number);
    }}""")


def test_patrol_registration_to_closure(page, browser, web_server, tokens, artifacts):
    assert web_server.has("POST", "/api/hazards"), "the hazard ledger API is not in this server"
    open_map(page, web_server, view=f"17/{SPOT[1]}/{SPOT[0]}")
    page.locator("#btn-hazards").click()
    page.locator("#hz-list").wait_for(timeout=20_000)
    _use_token(page, tokens["inspector"])

    # 登记: a patrol registers what it found, position picked on the map
    page.locator("#hz-new").click()
    form = page.locator("#hz-new-form")
    form.wait_for()
    assert form.locator("#hz-in-source").input_value() == "patrol"
    form.locator("#hz-in-facility_type").select_option("manhole")
    form.locator("#hz-in-county").fill(WEB_COUNTY)
    page.locator("#hz-pick").click()
    click_lonlat(page, *SPOT)
    page.wait_for_function("document.querySelector('#hz-in-position').value !== ''")
    lon, lat = (float(v) for v in page.locator("#hz-in-position").input_value().split(","))
    assert abs(lon - SPOT[0]) < 1e-4 and abs(lat - SPOT[1]) < 1e-4
    form.locator('[name="title"]').fill("井盖缺失（巡查发现）")
    form.locator('[name="location"]').fill("东湖路与环城路交叉口")
    form.locator('[name="risk_level"]').select_option("2")
    form.locator("#hz-new-submit").click()
    page.locator("#hz-d-number").wait_for(timeout=20_000)
    number = page.locator("#hz-d-number").inner_text()
    assert number.startswith(f"{WEB_COUNTY}-")
    assert _status(page) == "registered"
    assert "巡查" in page.locator("#hz-d-fields").inner_text()
    offered = page.locator("#hz-actions button").evaluate_all("bs => bs.map(b => b.dataset.action)")
    assert "start" in offered and "close" not in offered, offered

    # in the list and on the map (the panel's layer and the catalogue layer from vector tiles)
    page.locator("#hz-back").click()
    page.locator(f'#hz-list li[data-number="{number}"]').wait_for(timeout=20_000)
    assert page.locator(f'#hz-list li[data-number="{number}"]').get_attribute("data-status") == "registered"
    wait_idle(page)
    assert number in _rendered_numbers(page, "l.id === 'hz-ledger-circle'")
    # the catalogue layer (vector tiles; a browser keeps a tile up to its max-age, so a new
    # browser context reads the tiles the ledger's data version now yields)
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    try:
        other = context.new_page()
        open_map(other, web_server, view=f"17/{SPOT[1]}/{SPOT[0]}")
        other.evaluate("() => window.cim.tree.setVisible('hazards', true)")
        wait_idle(other)
        drawn = _rendered_numbers(other, "l.metadata?.['cim:layer'] === 'hazards'")
        assert number in drawn, drawn
    finally:
        context.close()
    page.screenshot(path=str(artifacts / "web_hazards_list.png"))

    # 整改: the 六定 fixed, rectification started, then submitted for acceptance
    # a click on the entry's symbol opens its detail
    click_lonlat(page, *SPOT)
    page.wait_for_function("(n) => document.querySelector('#hz-d-number')?.textContent === n", arg=number,
                           timeout=20_000)
    assert page.locator("#panel").get_attribute("data-owner") == "hazards"
    _act(page, "start", {"responsible_unit": "城关街道办", "responsible_person": "张三", "measures": "补装井盖并加设防坠网",
                         "budget": "1200", "deadline": "2030-06-30", "reviewer": "李四"})
    _wait_status(page, "rectifying")
    _act(page, "submit", comment="已补装井盖和防坠网")
    _wait_status(page, "awaiting_acceptance")
    offered = page.locator("#hz-actions button").evaluate_all("bs => bs.map(b => b.dataset.action)")
    assert "close" not in offered and "reject" not in offered, offered

    # 验收 / 销号 by the supervising role
    _use_token(page, tokens["supervisor"])
    page.wait_for_function("document.querySelector('#hz-actions button[data-action=\"close\"]') !== null", timeout=20_000)
    _act(page, "close", {"verify_result": "现场复核合格"})
    _wait_status(page, "closed")
    assert not page.locator("#hz-actions button").count()
    page.locator("#panel").screenshot(path=str(artifacts / "web_hazards_closed.png"))

    # the audit trail: every step with its actor
    events = page.locator("#hz-events li")
    steps = events.evaluate_all("ls => ls.map(l => [l.dataset.action, l.dataset.to])")
    assert steps == [["register_manual", "registered"], ["start", "rectifying"], ["submit", "awaiting_acceptance"],
                     ["close", "closed"]], steps
    trail = page.locator("#hz-events").inner_text()
    assert "巡查员甲" in trail and "监管员乙" in trail and "已补装井盖和防坠网" in trail and "张三" in trail
    conn = psycopg2.connect(web_server.db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT h.status, h.closed_by, h.verify_result, array_agg(e.action ORDER BY e.id) "
                        "FROM cim.hazard h JOIN cim.hazard_event e ON e.hazard_id = h.id WHERE h.number = %s "
                        "GROUP BY h.id", (number,))
            status, closed_by, verify, actions = cur.fetchone()
    finally:
        conn.close()
    assert (status, verify, actions) == ("closed", "现场复核合格", ["register_manual", "start", "submit", "close"])
    assert closed_by == "监管员乙"

    # a closed entry leaves the default (open) list; the 已销号 filter finds it; charts count it
    page.locator("#hz-back").click()
    page.locator("#hz-list").wait_for()
    page.wait_for_function("(n) => !document.querySelector(`#hz-list li[data-number=\"${n}\"]`)", arg=number,
                           timeout=20_000)
    page.locator("#hz-f-status").select_option("closed")
    page.locator("#hz-apply").click()
    page.locator(f'#hz-list li[data-number="{number}"]').wait_for(timeout=20_000)
    page.locator("#hz-stats-btn").click()
    page.wait_for_function("document.querySelector('#hz-charts')?.dataset.drawn === 'true'", timeout=30_000)
    assert page.locator("#hz-chart-status canvas").count() >= 1
    assert page.locator("#hz-chart-level canvas").count() >= 1
    assert "1" in page.locator("#hz-stats-total").inner_text()
    assert not page.errors, page.errors


RULE_SPOT = (111.5160, 27.2160)


@pytest.fixture(scope="module")
def found_by_rule(web_server) -> str:
    """An entry as a scan writes it (待核实, rule G01, evidence with the clause, its detect event)."""
    number = f"{WEB_COUNTY}-2020-00901"
    evidence = ('{"measured": 0.0, "required": 0.0, "unit": "m", "comparison": ">", '
                '"inputs": {"overlap_m": 12.5, "pressure_class": "ZA"}, "clause": "GB 50028-2006 第6.3.2条"}')
    conn = psycopg2.connect(web_server.db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("""
                INSERT INTO cim.hazard (number, source, rule_id, rule_key, facility_type, facility_refs, facility_keys,
                                        county_code, title, risk_level, hazard_class, found_by, status, evidence,
                                        shape, geom)
                VALUES (%(n)s, 'rule', 'G01', 'G01|web-test', 'gas_pipe',
                        '[{"table": "pipe_segment", "id": 1, "key": "web-test", "code": "RQ0001-RQ0002"}]',
                        '{web-test}', %(c)s, 'G01 燃气管道占压：管段 RQ0001-RQ0002 被房屋占压 12.5 m', 1, 'major',
                        'system', 'pending', %(e)s::jsonb,
                        ST_SetSRID(ST_MakePoint(%(x)s, %(y)s), 4490), ST_SetSRID(ST_MakePoint(%(x)s, %(y)s), 4490))
                RETURNING id""", {"n": number, "c": WEB_COUNTY, "e": evidence, "x": RULE_SPOT[0], "y": RULE_SPOT[1]})
            hid = cur.fetchone()[0]
            cur.execute("INSERT INTO cim.hazard_event (hazard_id, actor, role, action, from_status, to_status, version) "
                        "VALUES (%s, 'scan', 'system', 'detect', NULL, 'pending', 1)", (hid,))
        conn.commit()
    finally:
        conn.close()
    return number


def test_rule_finding_evidence_and_dismissal(page, web_server, tokens, found_by_rule):
    """A 待核实 entry of an automatic rule: the G01 filter finds it, its evidence shows measured
    vs required and the clause; the inspector attaches a site photo; dismissal (不成立) is offered
    to the supervisor, not the inspector."""
    assert web_server.has("POST", "/api/hazards"), "the hazard ledger API is not in this server"
    number = found_by_rule
    open_map(page, web_server, view=f"17/{RULE_SPOT[1]}/{RULE_SPOT[0]}")
    page.locator("#btn-hazards").click()
    page.locator("#hz-list").wait_for(timeout=20_000)
    page.locator("#hz-f-rule").select_option("rule:G01")
    page.locator("#hz-f-risk").select_option("1")
    page.locator("#hz-apply").click()
    item = page.locator(f'#hz-list li[data-number="{number}"]')
    item.wait_for(timeout=20_000)
    assert page.locator("#hz-list li").count() == 1
    _use_token(page, tokens["inspector"])
    item.click()
    page.locator("#hz-d-evidence").wait_for()
    evidence = page.locator("#hz-d-evidence").inner_text()
    assert "GB 50028-2006 第6.3.2条" in evidence and "overlap_m=12.5" in evidence
    assert _status(page) == "pending"
    offered = page.locator("#hz-actions button").evaluate_all("bs => bs.map(b => b.dataset.action)")
    assert "dismiss" not in offered and "register" in offered, offered

    # a site photo, uploaded by the inspector: listed with its kind, the file served back
    page.locator("#hz-file-kind").select_option("before")
    page.locator("#hz-file-caption").fill("现场照片")
    page.locator("#hz-file").set_input_files({"name": "现场.png", "mimeType": "image/png", "buffer": PNG})
    page.locator("#hz-file-send").click()
    page.locator("#hz-attachments li img").wait_for(timeout=20_000)
    assert "现场.png" in page.locator("#hz-attachments").inner_text()
    assert page.locator("#hz-attachments li img").evaluate("img => img.complete && img.naturalWidth") == 1

    _use_token(page, tokens["supervisor"])
    page.wait_for_function("document.querySelector('#hz-actions button[data-action=\"dismiss\"]') !== null",
                           timeout=20_000)
    # a dismissal needs a comment: without one the server refuses and the entry stays
    _act(page, "dismiss")
    page.locator(".notice.error").first.wait_for(timeout=10_000)
    assert _status(page) == "pending"
    page.locator('form.hz-form[data-action="dismiss"] #hz-in-comment').fill("现场核实：该段已于上月迁改，不存在占压")
    page.locator("#hz-action-submit").click()
    _wait_status(page, "dismissed")
    steps = page.locator("#hz-events li").evaluate_all("ls => ls.map(l => [l.dataset.action, l.dataset.to])")
    assert steps == [["detect", "pending"], ["attach", "pending"], ["dismiss", "dismissed"]], steps
    assert "不存在占压" in page.locator("#hz-events").inner_text()
    assert not [e for e in page.errors if "400" not in e], page.errors

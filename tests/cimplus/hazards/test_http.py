"""The ledger over real HTTP: list (GeoJSON, filters, paging), one entry, registration,
transitions (403 / 409), two concurrent transitions, statistics, exports, attachment defences,
queued scans and bilingual 4xx for every bad input."""

from __future__ import annotations

import io
import threading
import time
from urllib.parse import urljoin

import httpx
import psycopg2
import pytest
from plant import Plant

COUNTY = "439501"


def wait_task(base: str, headers: dict, task_id: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        row = httpx.get(f"{base}/api/tasks/{task_id}", headers=headers).json()
        if row["state"] in ("done", "failed", "cancelled") or time.monotonic() > deadline:
            return row
        time.sleep(0.2)


@pytest.fixture(scope="module")
def ledger(hz_server):
    """County 439501 with 5 grade-D and 3 grade-C buildings, scanned through the API."""
    base, url, token = hz_server.base, hz_server.url, hz_server.token
    conn = psycopg2.connect(url)
    plant = Plant(conn, COUNTY)
    for i in range(8):
        plant.building(i * 30.0, 0, i * 30.0 + 10, 10, code=f"H{i}", appraisal_grade="D" if i < 5 else "C",
                       address=f"建设路 {i} 号")
    conn.commit()
    conn.close()
    boss = token("supervisor", COUNTY)
    res = httpx.post(f"{base}/api/hazards/scan", json={"county": COUNTY, "rules": ["B01"]}, headers=boss)
    assert res.status_code == 202, res.text
    task = wait_task(base, boss, res.json()["task_id"])
    assert task["state"] == "done" and task["result"]["totals"]["new"] == 8, task
    return {"base": base, "url": url, "token": token, "viewer": token("viewer"), "staff": token("inspector", COUNTY),
            "boss": boss}


def test_list_is_geojson_filtered_and_paged(ledger):
    base, viewer = ledger["base"], ledger["viewer"]
    res = httpx.get(f"{base}/api/hazards", params={"county": COUNTY}, headers=viewer)
    assert res.status_code == 200 and res.headers["content-type"].startswith("application/geo+json")
    fc = res.json()
    assert fc["type"] == "FeatureCollection" and fc["numberMatched"] == 8
    f = fc["features"][0]
    assert f["geometry"]["type"] == "Point"
    p = f["properties"]
    assert p["status_zh"] == "待核实" and p["facility_type_zh"] == "房屋" and p["rule_id"] == "B01"
    assert p["risk_colour"] in ("red", "orange") and p["risk_hex"].startswith("#") and p["overdue"] is False
    assert p["measured"] in ("C", "D") and p["location"].startswith("建设路")

    seen, url = [], f"{base}/api/hazards?county={COUNTY}&limit=3"
    while url:
        page = httpx.get(url, headers=viewer).json()
        seen += [x["id"] for x in page["features"]]
        nxt = [link for link in page["links"] if link["rel"] == "next"]
        url = urljoin(base, nxt[0]["href"]) if nxt else None
    assert len(seen) == 8 and len(set(seen)) == 8 and seen == sorted(seen, reverse=True)

    def n(**params):
        return httpx.get(f"{base}/api/hazards", params={"county": COUNTY, **params}, headers=viewer).json()["numberMatched"]

    assert n(risk_level="1") == 5 and n(risk_level="2,1") == 8 and n(rule="B01") == 8 and n(rule="G01") == 0
    assert n(facility_type="building") == 8 and n(status="pending") == 8 and n(status="open") == 8
    assert n(status="closed") == 0 and n(overdue="false") == 8 and n(overdue="true") == 0
    assert n(county=COUNTY[:4] + "00") == 8 and n(county="110101") == 0
    assert n(bbox="111.69,29.09,111.7001,29.1001") == 1          # only the first building's marker
    assert n(source="rule", supervision="none") == 8


@pytest.mark.parametrize("params", [{"status": "flying"}, {"risk_level": "7"}, {"bbox": "1,2,3"}, {"bbox": "a,b,c,d"},
                                    {"bbox": "10,10,5,5"}, {"county": "12"}, {"rule": "ZZ1"}, {"overdue": "maybe"},
                                    {"limit": "0"}, {"limit": "100001"}, {"cursor": "0"}, {"facility_type": "x"},
                                    {"source": "x"}, {"cursor": "99999999999999999999"}, {"county": "4\x00"}])
def test_bad_filters_are_bilingual_400s(ledger, params):
    res = httpx.get(f"{ledger['base']}/api/hazards", params=params, headers=ledger["viewer"])
    assert res.status_code == 400, res.text
    assert res.json()["message_zh"] and res.json()["message_en"]
    assert httpx.get(f"{ledger['base']}/api/hazards/stats", params=params,
                     headers=ledger["viewer"]).status_code in (200, 400)


def test_one_entry_and_bad_ids(ledger):
    base, staff = ledger["base"], ledger["staff"]
    hid = httpx.get(f"{base}/api/hazards", params={"county": COUNTY, "limit": 1}, headers=staff).json()["features"][0]["id"]
    e = httpx.get(f"{base}/api/hazards/{hid}", headers=staff).json()
    assert e["events"][0]["action"] == "detect" and e["evidence"]["clause"].startswith("JGJ 125")
    assert e["facility_refs"][0]["table"] == "building" and e["geometry"]["type"] == "MultiPolygon"
    assert set(e["allowed_actions"]) == {"register", "update"}
    viewer = httpx.get(f"{base}/api/hazards/{hid}", headers=ledger["viewer"]).json()
    assert viewer["allowed_actions"] == []
    for path, status in (("abc", 400), ("99999999", 404), ("99999999999999999999", 400), ("-1", 400)):
        res = httpx.get(f"{base}/api/hazards/{path}", headers=staff)
        assert res.status_code == status and res.json()["message_en"]
    assert httpx.get(f"{base}/api/hazards/{hid}").status_code == 401
    voc = httpx.get(f"{base}/api/hazards/vocabulary", headers=staff).json()
    assert voc["statuses"]["closed"]["zh"] == "已销号" and voc["rules"]["G01"]["name_zh"] == "燃气管道占压"
    assert voc["actions"]["close"]["permission"] == "accept"


GEOM = {"type": "Point", "coordinates": [111.7002, 29.1003]}


def test_registration_and_transitions(ledger):
    base, staff, boss, viewer = ledger["base"], ledger["staff"], ledger["boss"], ledger["viewer"]
    body = {"county": COUNTY, "source": "patrol", "facility_type": "manhole", "title": "井盖缺失", "risk_level": 1,
            "geometry": GEOM}
    res = httpx.post(f"{base}/api/hazards", json=body, headers=staff)
    assert res.status_code == 201, res.text
    e = res.json()
    assert e["status"] == "registered" and e["events"][0]["action"] == "register_manual"
    for bad, status in ((body, 403, ), ({**body, "extra": 1}, 400), ({**body, "geometry": None}, 400),
                        ({**body, "risk_level": "high"}, 400)):
        hdr = viewer if status == 403 else staff
        r = httpx.post(f"{base}/api/hazards", json=bad, headers=hdr)
        assert r.status_code == status and r.json()["message_zh"], r.text
    r = httpx.post(f"{base}/api/hazards", content=b"{not json", headers={**staff, "content-type": "application/json"})
    assert r.status_code == 400
    assert httpx.post(f"{base}/api/hazards", json=body).status_code == 401

    url = f"{base}/api/hazards/{e['id']}/transition"
    ok = httpx.post(url, json={"action": "update", "version": e["version"], "fields": {"location": "人民路口"}},
                    headers=staff)
    assert ok.status_code == 200 and ok.json()["location"] == "人民路口"
    stale = httpx.post(url, json={"action": "update", "version": e["version"], "fields": {"location": "x"}},
                       headers=staff)
    assert stale.status_code == 409
    assert stale.json()["detail"]["current"]["version"] == e["version"] + 1
    assert stale.json()["detail"]["current"]["location"] == "人民路口"
    v = ok.json()["version"]
    assert httpx.post(url, json={"action": "close", "version": v}, headers=staff).status_code == 403
    assert httpx.post(url, json={"action": "close", "version": v}, headers=boss).status_code == 409   # wrong state
    assert httpx.post(url, json={"action": "fly", "version": v}, headers=staff).status_code == 400
    assert httpx.post(url, json={"action": "update"}, headers=staff).status_code == 400
    assert httpx.post(url, json={"action": "update", "version": v}, headers=viewer).status_code == 403
    assert httpx.post(f"{base}/api/hazards/99999999/transition", json={"action": "update", "version": 1},
                      headers=staff).status_code == 404


def test_two_concurrent_transitions_one_wins(ledger):
    base, staff = ledger["base"], ledger["staff"]
    e = httpx.post(f"{base}/api/hazards", headers=staff, json={
        "county": COUNTY, "facility_type": "gas_pipe", "title": "并发测试", "risk_level": 3, "geometry": GEOM}).json()
    barrier = threading.Barrier(2)
    codes = []

    def go(location: str) -> None:
        barrier.wait()
        r = httpx.post(f"{base}/api/hazards/{e['id']}/transition", headers=staff, timeout=60,
                       json={"action": "update", "version": e["version"], "fields": {"location": location}})
        codes.append((r.status_code, location, r.json()))

    threads = [threading.Thread(target=go, args=(loc,)) for loc in ("东门", "西门")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(c[0] for c in codes) == [200, 409]
    winner = next(c for c in codes if c[0] == 200)
    loser = next(c for c in codes if c[0] == 409)
    assert loser[2]["detail"]["current"]["location"] == winner[1]
    final = httpx.get(f"{base}/api/hazards/{e['id']}", headers=staff).json()
    assert final["location"] == winner[1] and final["version"] == e["version"] + 1
    assert [ev["action"] for ev in final["events"]] == ["register_manual", "update"]


def test_stats_and_exports(ledger):
    from openpyxl import load_workbook

    base, viewer = ledger["base"], ledger["viewer"]
    st = httpx.get(f"{base}/api/hazards/stats", params={"county": COUNTY, "rule": "B01"}, headers=viewer).json()
    assert st["total"] == 8 and st["by_status"]["pending"]["count"] == 8 and st["overdue"] == 0
    assert st["by_facility_type"]["building"]["count"] == 8 and st["by_risk_level"]["1"]["colour"] == "red"
    assert st["matrix"] == [{"status": "pending", "facility_type": "building", "area_code": COUNTY, "count": 8,
                             "overdue": 0}]
    res = httpx.get(f"{base}/api/hazards/export.xlsx", params={"county": COUNTY}, headers=viewer)
    assert res.status_code == 200 and res.content[:2] == b"PK"
    assert "filename*=UTF-8''" in res.headers["content-disposition"]
    wb = load_workbook(io.BytesIO(res.content))
    assert wb.sheetnames[0] == "汇总" and "房屋" in wb.sheetnames
    rows = list(wb["房屋"].iter_rows(values_only=True))
    assert rows[0][:3] == ("序号", "隐患编号", "来源") and len(rows) == 9
    assert {r[1] for r in rows[1:]} >= {f["properties"]["number"] for f in httpx.get(
        f"{base}/api/hazards", params={"county": COUNTY, "rule": "B01"}, headers=viewer).json()["features"]}
    html = httpx.get(f"{base}/api/hazards/export.html", params={"county": COUNTY}, headers=viewer)
    assert html.status_code == 200 and "设施危险源及风险隐患管理台账" in html.text and "@page" in html.text
    assert html.text.count("<tr>") >= 9


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 2000 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 500
PDF = b"%PDF-1.4\n" + b"0" * 500 + b"\n%%EOF"


def test_attachments_and_their_defences(ledger, hz_server):
    base, staff, viewer = ledger["base"], ledger["staff"], ledger["viewer"]
    hid = httpx.get(f"{base}/api/hazards", params={"county": COUNTY, "limit": 1}, headers=viewer).json()["features"][0]["id"]
    url = f"{base}/api/hazards/{hid}/attachments"

    def up(data: bytes, name: str, kind: str = "before", hdr=staff, ctype: str = "image/jpeg"):
        return httpx.post(url, files={"file": (name, data, ctype)}, data={"kind": kind, "caption": "现场照片"}, headers=hdr)

    ok = up(JPEG, "现场.jpg")
    assert ok.status_code == 201, ok.text
    a = ok.json()
    assert a["media_type"] == "image/jpeg" and a["file_name"] == "现场.jpg" and len(a["sha256"]) == 64
    got = httpx.get(urljoin(base, a["href"]), headers=viewer)
    assert got.status_code == 200 and got.content == JPEG and got.headers["content-type"] == "image/jpeg"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert up(PNG, "a.png", "after").json()["media_type"] == "image/png"
    assert up(PDF, "验收报告.pdf", "report", ctype="application/pdf").json()["media_type"] == "application/pdf"

    for data, name, status in ((b"<script>alert(1)</script>", "photo.jpg", 400),           # type from the bytes
                               (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "a.svg", 400),
                               (b"MZ\x90\x00" + b"\x00" * 100, "setup.pdf", 400),
                               (b"", "empty.jpg", 400),
                               (JPEG[:-2] + b"\x00" * (1 << 20) + b"\xff\xd9", "huge.jpg", 413)):
        r = up(data, name)
        assert r.status_code == status and r.json()["message_zh"], (name, r.text)

    trav = up(JPEG + b"1", "../../../../tmp/evil/x.png")
    assert trav.status_code == 201 and trav.json()["file_name"] == "x.png"
    assert up(JPEG + b"2", "..\\..\\win.jpg").json()["file_name"] == "win.jpg"
    from pathlib import Path
    assert not Path("/tmp/evil/x.png").exists()
    root = hz_server.home / "hazards" / "attachments"
    files = [f for f in root.rglob("*") if f.is_file()]
    assert files and all(len(f.stem) == 64 and f.parent.name == f.stem[:2] for f in files)   # sha256 names only
    assert not any((root / ".incoming").iterdir())                                          # refused uploads leave nothing

    assert up(JPEG, "v.jpg", hdr=viewer).status_code == 403
    assert up(JPEG, "k.jpg", kind="selfie").status_code == 400
    assert httpx.post(url, data={"kind": "before"}, headers=staff).status_code == 400
    assert httpx.post(url, content=b"raw", headers={**staff, "content-type": "image/jpeg"}).status_code == 400
    assert httpx.get(f"{url}/999999", headers=viewer).status_code == 404
    e = httpx.get(f"{base}/api/hazards/{hid}", headers=viewer).json()
    assert [x["kind"] for x in e["attachments"]][:3] == ["before", "after", "report"]
    assert sum(ev["action"] == "attach" for ev in e["events"]) == len(e["attachments"])
    with psycopg2.connect(ledger["url"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM cim.audit_log WHERE action = 'hazard.attach' AND target = %s", (f"hazard:{hid}",))
        assert cur.fetchone()[0] == len(e["attachments"])


def test_refused_kind_or_caption_stores_nothing(ledger, hz_server):
    """A valid file with a bad kind or caption is refused before it is stored: a bilingual 400,
    no file under its digest, nothing in the incoming directory, no attachment row, no event."""
    import hashlib

    base, staff, viewer = ledger["base"], ledger["staff"], ledger["viewer"]
    hid = httpx.get(f"{base}/api/hazards", params={"county": COUNTY, "limit": 1}, headers=viewer).json()["features"][0]["id"]
    before = httpx.get(f"{base}/api/hazards/{hid}", headers=viewer).json()
    root = hz_server.home / "hazards" / "attachments"
    for n, fields in enumerate(({"kind": "selfie", "caption": "现场照片"}, {"kind": "before", "caption": "x" * 501},
                                {"kind": "before", "caption": "现场\x07照片"})):
        data = JPEG + f"orphan-{n}".encode()
        sha = hashlib.sha256(data).hexdigest()
        r = httpx.post(f"{base}/api/hazards/{hid}/attachments", files={"file": ("o.jpg", data, "image/jpeg")},
                       data=fields, headers=staff)
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["message_zh"] and body["message_en"] and body["message_zh"] != body["message_en"], body
        assert not (root / sha[:2] / f"{sha}.jpg").exists()
        assert not (root / ".incoming").exists() or not any((root / ".incoming").iterdir())
        with psycopg2.connect(ledger["url"]) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM cim.hazard_attachment WHERE sha256 = %s", (sha,))
            assert cur.fetchone()[0] == 0
    after = httpx.get(f"{base}/api/hazards/{hid}", headers=viewer).json()
    assert len(after["attachments"]) == len(before["attachments"]) and len(after["events"]) == len(before["events"])


def test_scan_requests(ledger):
    base, token = ledger["base"], ledger["token"]
    url = f"{base}/api/hazards/scan"
    assert httpx.post(url, json={"county": COUNTY}, headers=ledger["staff"]).status_code == 403
    assert httpx.post(url, json={"county": COUNTY}, headers=ledger["viewer"]).status_code == 403
    assert httpx.post(url, json={"county": COUNTY}, headers=token("supervisor", "439999")).status_code == 403
    assert httpx.post(url, json={"county": COUNTY}).status_code == 401
    for bad in ({"county": "43"}, {"county": COUNTY, "rules": ["ZZ9"]}, {"county": COUNTY, "rules": "G01"},
                {"county": COUNTY, "nope": 1}):
        r = httpx.post(url, json=bad, headers=ledger["boss"])
        assert r.status_code == 400 and r.json()["message_en"], r.text
    r = httpx.post(url, json={"county": COUNTY, "rules": ["B01"], "incremental": False}, headers=ledger["boss"])
    task = wait_task(base, ledger["boss"], r.json()["task_id"])
    assert task["state"] == "done" and task["result"]["rules"]["B01"]["unchanged"] == 8

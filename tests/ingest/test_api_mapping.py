"""The mapping step of the upload API over real HTTP: a dry run reports its mapping table, the
user changes a field and a value mapping and re-checks the stored files, confirms, and the
mapping is saved as the county's (versioned, audited) and used for the county's next upload."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psycopg2
import pytest
import shapely

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: sibling helpers
from apikit import LiveServer, token  # noqa: E402
from fixtures import E0, N0, write_shapefile, zip_folder  # noqa: E402

from cim.auth import Role  # noqa: E402

COUNTY = "430526"
THIRD = "430527"


def _delivery(folder: Path, prefix: str) -> Path:
    n = 12
    i = np.arange(n)
    x, y = E0 + (i % 6) * 40.0, N0 + 300 + (i // 6) * 40.0
    frame = pd.DataFrame({"编号": [f"{prefix}{k}" for k in i], "层": [5] * n, "字段X": ["砖木"] * 6 + ["框架"] * 6})
    write_shapefile(folder, "JZ_buildings", frame, shapely.box(x, y, x + 20, y + 15))
    return zip_folder(folder, folder.parent / f"{folder.name}.zip")


@pytest.fixture(scope="module")
def api(db_url, tmp_path_factory):
    home = tmp_path_factory.mktemp("cim-home-mapping")
    conn = psycopg2.connect(db_url)
    toks = {"uploader": token(conn, Role.uploader, [COUNTY]), "other": token(conn, Role.uploader, ["430599"]),
            "third": token(conn, Role.uploader, [THIRD])}
    conn.close()
    srv = LiveServer(db_url, home, max_upload_mb=16)
    yield {"url": srv.url, "db_url": db_url, "home": home, **toks}
    srv.stop()


def _hdr(api, who="uploader") -> dict:
    return {"Authorization": f"Bearer {api[who]}"}


def _wait(api, job_id, who="uploader") -> dict:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = httpx.get(f"{api['url']}/api/ingest/{job_id}", headers=_hdr(api, who), timeout=30).json()
        if job["state"] in ("done", "rejected", "failed", "cancelled", "awaiting_confirmation"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def _mapping(api, job, who="uploader") -> dict[str, dict]:
    rep = httpx.get(api["url"] + job["links"]["json"], headers=_hdr(api, who)).json()
    (layer,) = rep["summary"]["layers"]
    assert "structure_type" in layer["columns"]
    return {m["source_field"]: m for m in layer["mapping"]}


def test_mapping_step_recheck_confirm_and_county_mapping(api, tmp_path):
    path = _delivery(tmp_path / "first", "A")
    res = httpx.post(api["url"] + "/api/ingest", files={"file": (path.name, path.read_bytes())},
                     data={"county": COUNTY, "dry_run": "true"}, headers=_hdr(api))
    job_id = res.json()["job_id"]
    job = _wait(api, job_id)
    assert job["state"] == "rejected", job                   # 层 and 字段X are not recognised
    time.sleep(2)                                            # the runner has seen its process end
    assert (api["home"] / "uploads" / job_id / path.name).is_file()   # kept to be re-checked
    rows = _mapping(api, job)
    assert rows["层"]["how"] == "unmapped" and rows["字段X"]["samples"]

    mapping = {"fields": {"层": "floors_above", "字段X": "structure_type"}, "values": {"structure_type": {"砖木": "TM"}}}
    bad = httpx.post(f"{api['url']}/api/ingest/{job_id}/recheck", headers=_hdr(api),
                     content=json.dumps({"fields": {"层": "no_such_column"}}))
    assert bad.status_code == 400 and "no_such_column" in bad.json()["message_en"]
    assert httpx.post(f"{api['url']}/api/ingest/{job_id}/recheck", headers=_hdr(api), content=b"[1]").status_code == 400
    assert httpx.post(f"{api['url']}/api/ingest/{job_id}/recheck", headers=_hdr(api, "other"),
                      content=json.dumps(mapping)).status_code == 403
    res = httpx.post(f"{api['url']}/api/ingest/{job_id}/recheck", headers=_hdr(api), content=json.dumps(mapping))
    assert res.status_code == 202, res.text
    job = _wait(api, job_id)
    assert job["state"] == "awaiting_confirmation", job
    rows = _mapping(api, job)
    assert (rows["层"]["target"], rows["层"]["how"]) == ("floors_above", "user")
    assert rows["字段X"]["target"] == "structure_type"

    assert httpx.post(f"{api['url']}/api/ingest/{job_id}/confirm", headers=_hdr(api)).status_code == 202
    done = _wait(api, job_id)
    assert done["state"] == "done", done
    assert httpx.post(f"{api['url']}/api/ingest/{job_id}/recheck", headers=_hdr(api),
                      content=json.dumps(mapping)).status_code == 409     # loaded: nothing to re-check
    conn = psycopg2.connect(api["db_url"])
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT structure_type, count(*) FROM cim.building WHERE county_code = %s AND is_current "
                        "GROUP BY 1 ORDER BY 1", (COUNTY,))
            assert cur.fetchall() == [("GH", 6), ("TM", 6)]
            cur.execute("SELECT version, mapping, source_job FROM cim.county_mapping WHERE county_code = %s", (COUNTY,))
            (version, saved, source_job), = cur.fetchall()
            assert version == 1 and source_job == job_id
            assert saved == {"fields": {"层": "floors_above", "字段X": "structure_type"},
                             "values": {"structure_type": {"砖木": "TM"}}}
            cur.execute("SELECT action FROM cim.audit_log WHERE county_code = %s AND action LIKE 'ingest.%%' "
                        "ORDER BY id", (COUNTY,))
            actions = [r[0] for r in cur.fetchall()]
            assert actions[:3] == ["ingest.upload", "ingest.recheck", "ingest.confirm"]
            assert "ingest.mapping.save" in actions
    finally:
        conn.close()

    # the county's next delivery maps by its saved mapping, without any option
    nxt = _delivery(tmp_path / "next", "B")
    res = httpx.post(api["url"] + "/api/ingest", files={"file": (nxt.name, nxt.read_bytes())},
                     data={"county": COUNTY, "dry_run": "true"}, headers=_hdr(api))
    job = _wait(api, res.json()["job_id"])
    assert job["state"] == "awaiting_confirmation", job
    rows = _mapping(api, job)
    assert rows["层"]["how"] == "user" and f"{COUNTY} v1" in rows["层"]["reason"]


def test_upload_with_a_mapping_field(api, tmp_path):
    path = _delivery(tmp_path / "formmap", "C")
    mapping = {"fields": {"层": "floors_above", "字段X": "structure_type"}, "values": {"structure_type": {"砖木": "TM"}}}
    res = httpx.post(api["url"] + "/api/ingest", files={"file": (path.name, path.read_bytes())},
                     data={"county": "430599", "dry_run": "true", "mapping": json.dumps(mapping)},
                     headers=_hdr(api, "other"))
    job = _wait(api, res.json()["job_id"], "other")
    assert job["state"] == "awaiting_confirmation", job
    bad = httpx.post(api["url"] + "/api/ingest", files={"file": (path.name, path.read_bytes())},
                     data={"county": "430599", "dry_run": "true", "mapping": "{not json"}, headers=_hdr(api, "other"))
    assert bad.status_code == 400 and bad.json()["message_zh"]


def test_rejected_job_cancelled_drops_its_files(api, tmp_path):
    path = _delivery(tmp_path / "rejected", "D")
    res = httpx.post(api["url"] + "/api/ingest", files={"file": (path.name, path.read_bytes())},
                     data={"county": "430599", "dry_run": "true"}, headers=_hdr(api, "other"))
    job_id = res.json()["job_id"]
    assert _wait(api, job_id, "other")["state"] == "rejected"
    res = httpx.post(f"{api['url']}/api/ingest/{job_id}/cancel", headers=_hdr(api, "other"))
    assert res.status_code == 200 and res.json()["state"] == "cancelled"
    assert not (api["home"] / "uploads" / job_id / path.name).exists()
    assert httpx.get(api["url"] + f"/api/ingest/{job_id}/report.json", headers=_hdr(api, "other")).status_code == 200
    assert httpx.post(f"{api['url']}/api/ingest/{job_id}/recheck", headers=_hdr(api, "other"),
                      content=b"{}").status_code == 409


def test_grouped_findings_are_paged(api, tmp_path):
    """GET /api/ingest/{job}/groups: the report's summary and its groups a page at a time, in the
    order of report.json's groups (biggest first), without the findings."""
    n = 400
    i = np.arange(n)
    x, y = E0 + (i % 20) * 40.0, N0 + 300 + (i // 20) * 40.0
    values = [f"结构{k % 37}" for k in range(n)]                  # 37 values no dictionary knows (Q22)
    frame = pd.DataFrame({"编号": [f"G{k}" for k in i], "地上层数": [3] * n, "结构类型": values})
    folder = tmp_path / "groups"
    write_shapefile(folder, "JZ_buildings", frame, shapely.box(x, y, x + 20, y + 15))
    path = zip_folder(folder, tmp_path / "groups.zip")
    res = httpx.post(api["url"] + "/api/ingest", files={"file": (path.name, path.read_bytes())},
                     data={"county": "430599", "dry_run": "true"}, headers=_hdr(api, "other"))
    job_id = res.json()["job_id"]
    assert _wait(api, job_id, "other")["state"] == "rejected"
    url = f"{api['url']}/api/ingest/{job_id}/groups"
    full = httpx.get(f"{api['url']}/api/ingest/{job_id}/report.json", headers=_hdr(api, "other")).json()

    first = httpx.get(url, headers=_hdr(api, "other")).json()
    assert "findings" not in first and first["summary"] == full["summary"]
    assert first["groups_total"] == len(full["groups"]) >= 37 and (first["offset"], first["limit"]) == (0, 50)
    assert first["groups"] == full["groups"][:50]
    assert first["summary"]["fix_first"][0]["rule_id"] == "Q22" and not first["summary"]["accepted"]
    g = first["groups"][0]
    assert g["rule_id"] == "Q22" and g["count"] == 11 and len(g["rows"]) == 5 and len(g["extent"]) == 4
    page = httpx.get(url, params={"offset": 20, "limit": 10}, headers=_hdr(api, "other")).json()
    assert page["groups"] == full["groups"][20:30]
    assert httpx.get(url, params={"offset": 10_000}, headers=_hdr(api, "other")).json()["groups"] == []
    for bad in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": "x"}):
        res = httpx.get(url, params=bad, headers=_hdr(api, "other"))
        assert res.status_code == 400 and res.json()["message_zh"], (bad, res.text)
    assert httpx.get(url, headers=_hdr(api)).status_code == 403                # another county's uploader
    assert httpx.get(url, headers={}).status_code == 401
    assert httpx.get(f"{api['url']}/api/ingest/{'0' * 32}/groups", headers=_hdr(api, "other")).status_code == 404


def test_recheck_maps_a_profile_field_to_nothing_and_the_county_keeps_it(api, tmp_path):
    """建成年代 is a 建造年代 alias of the buildings profile, but this delivery holds free text there:
    the user maps it to nothing (an empty target), re-checks, confirms; the county's mapping keeps
    the refusal and its next delivery is read without the field."""
    n = 8
    i = np.arange(n)
    x, y = E0 + 2000 + i * 40.0, N0 + 300 + 0 * i
    frame = pd.DataFrame({"编号": [f"U{k}" for k in i], "地上层数": [2] * n, "结构类型": ["框架"] * n,
                          "建成年代": ["九十年代", "不详"] * (n // 2)})
    write_shapefile(tmp_path / "era", "JZ_buildings", frame, shapely.box(x, y, x + 20, y + 15))
    path = zip_folder(tmp_path / "era", tmp_path / "era.zip")
    res = httpx.post(api["url"] + "/api/ingest", files={"file": (path.name, path.read_bytes())},
                     data={"county": THIRD, "dry_run": "true"}, headers=_hdr(api, "third"))
    job_id = res.json()["job_id"]
    job = _wait(api, job_id, "third")
    assert job["state"] == "rejected", job                                 # Q22 on 建成年代
    assert _mapping(api, job, "third")["建成年代"]["target"] == "build_era"
    res = httpx.post(f"{api['url']}/api/ingest/{job_id}/recheck", headers=_hdr(api, "third"),
                     content=json.dumps({"fields": {"建成年代": ""}}))
    assert res.status_code == 202, res.text
    job = _wait(api, job_id, "third")
    assert job["state"] == "awaiting_confirmation", job
    row = _mapping(api, job, "third")["建成年代"]
    assert (row["target"], row["how"]) == (None, "user")
    assert httpx.post(f"{api['url']}/api/ingest/{job_id}/confirm", headers=_hdr(api, "third")).status_code == 202
    assert _wait(api, job_id, "third")["state"] == "done"
    conn = psycopg2.connect(api["db_url"])
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT mapping FROM cim.county_mapping WHERE county_code = %s ORDER BY version DESC LIMIT 1",
                        (THIRD,))
            assert cur.fetchone()[0]["fields"] == {"建成年代": ""}
            cur.execute("SELECT count(*), count(build_era) FROM cim.building WHERE county_code = %s AND is_current",
                        (THIRD,))
            assert cur.fetchone() == (n, 0)
    finally:
        conn.close()
    nxt = zip_folder(tmp_path / "era", tmp_path / "era2.zip")
    res = httpx.post(api["url"] + "/api/ingest", files={"file": ("era2.zip", nxt.read_bytes())},
                     data={"county": THIRD, "dry_run": "true"}, headers=_hdr(api, "third"))
    job = _wait(api, res.json()["job_id"], "third")
    row = _mapping(api, job, "third")["建成年代"]
    assert (row["target"], row["how"]) == (None, "user") and f"{THIRD} v1" in row["reason"]

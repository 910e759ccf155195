"""Upload API defences: every bad upload is a bilingual 4xx and nothing is written."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import psycopg2
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: sibling helpers
from apikit import PRJ_4546, LiveServer, shapefile_set, token, zipped  # noqa: E402
from loadkit import snapshot  # noqa: E402

from cim.auth import Role  # noqa: E402

COUNTY = "430521"


@pytest.fixture(scope="module")
def api(db_url, tmp_path_factory):
    home = tmp_path_factory.mktemp("cim-home")
    conn = psycopg2.connect(db_url)
    toks = {"uploader": token(conn, Role.uploader, [COUNTY]), "other": token(conn, Role.uploader, ["430522"]),
            "viewer": token(conn, Role.viewer), "admin": token(conn, Role.admin)}
    conn.close()
    srv = LiveServer(db_url, home, max_upload_mb=1)
    yield {"url": srv.url, "home": home, **toks}
    srv.stop()


def _state(conn, home: Path) -> dict:
    snap = snapshot(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM cim.ingest_job")
        snap["jobs"] = cur.fetchone()[0]
    conn.rollback()
    uploads = home / "uploads"
    snap["upload_files"] = sorted(str(p) for p in uploads.rglob("*")) if uploads.exists() else []
    return snap


def _post(api, files, *, who="uploader", county=COUNTY, headers=None, **data):
    hdrs = {"Authorization": f"Bearer {api[who]}"} if who else {}
    hdrs.update(headers or {})
    return httpx.post(api["url"] + "/api/ingest", files=files, data={"county": county, **data}, headers=hdrs,
                      timeout=60)


def _bilingual(res, status: int, code: str | None = None) -> dict:
    assert res.status_code == status, res.text
    body = res.json()
    assert body["message_zh"] and body["message_en"], body
    if code:
        assert body["code"] == code, body
    return body


@pytest.fixture
def unchanged(conn, api):
    before = _state(conn, api["home"])
    yield
    assert _state(conn, api["home"]) == before


def test_wrong_or_missing_token_is_401(api, unchanged, tmp_path):
    parts = shapefile_set(tmp_path)
    _bilingual(_post(api, {"file": ("a.zip", zipped(parts))}, who=None), 401, "unauthenticated")
    res = httpx.post(api["url"] + "/api/ingest", files={"file": ("a.zip", zipped(parts))}, data={"county": COUNTY},
                     headers={"Authorization": "Bearer cim_00000000_forged"})
    _bilingual(res, 401, "unauthenticated")


def test_viewer_and_other_county_are_403(api, unchanged, tmp_path):
    z = zipped(shapefile_set(tmp_path))
    _bilingual(_post(api, {"file": ("a.zip", z)}, who="viewer"), 403, "forbidden")
    _bilingual(_post(api, {"file": ("a.zip", z)}, who="other"), 403, "forbidden")
    body = _bilingual(_post(api, {"file": ("a.zip", z)}, county="43052"), 400)
    assert "county" in body["message_en"]


def test_size_limit_declared_and_streamed(api, unchanged):
    big = b"PK\x03\x04" + b"\x00" * (2 << 20)
    _bilingual(_post(api, {"file": ("big.zip", big)}), 413, "payload_too_large")

    def chunks():  # no Content-Length: the server counts while streaming
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="county"\r\n\r\n430521\r\n'
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="big.zip"\r\n' \
                         b"Content-Type: application/zip\r\n\r\n"
        for _ in range(40):
            yield b"\x00" * (64 << 10)
        yield b"\r\n--xyz--\r\n"

    res = httpx.post(api["url"] + "/api/ingest", content=chunks(),
                     headers={"Authorization": f"Bearer {api['uploader']}",
                              "Content-Type": "multipart/form-data; boundary=xyz"}, timeout=60)
    _bilingual(res, 413, "payload_too_large")


def test_not_multipart_and_no_file(api, unchanged):
    res = httpx.post(api["url"] + "/api/ingest", json={"county": COUNTY},
                     headers={"Authorization": f"Bearer {api['uploader']}"})
    _bilingual(res, 400, "unreadable_input")
    res = httpx.post(api["url"] + "/api/ingest", data={"county": COUNTY}, files={"other": ("x.txt", b"x")},
                     headers={"Authorization": f"Bearer {api['uploader']}"})
    _bilingual(res, 400)


@pytest.mark.parametrize("case", ["non_zip", "empty_zip", "traversal", "absolute", "bomb", "truncated_shp",
                                  "missing_shx", "missing_dbf", "unknown_crs", "bad_suffix", "text_as_gpkg",
                                  "truncated_dbf", "xlsx_bomb"])
def test_bad_files_are_refused(api, unchanged, tmp_path, case):
    parts = shapefile_set(tmp_path)
    shp = parts["JSPOINT.shp"]
    files, code, status = None, "unreadable_input", 400
    if case == "non_zip":
        files = {"file": ("delivery.zip", b"this is not a zip file at all")}
    elif case == "empty_zip":
        files = {"file": ("delivery.zip", zipped({}))}
    elif case == "traversal":
        files = {"file": ("delivery.zip", zipped({**parts, "../../etc/evil.txt": b"x"}))}
    elif case == "absolute":
        files = {"file": ("delivery.zip", zipped({**parts, "/tmp/evil.txt": b"x"}))}
    elif case == "bomb":
        files = {"file": ("delivery.zip", zipped({**parts, "filler.dbf": b"\x00" * (8 << 20)}))}
        code, status = "payload_too_large", 413
    elif case == "truncated_shp":
        files = {"file": ("delivery.zip", zipped({**parts, "JSPOINT.shp": shp[: len(shp) - 30]}))}
    elif case == "missing_shx":
        files = {"file": ("delivery.zip", zipped({k: v for k, v in parts.items() if not k.endswith(".shx")}))}
    elif case == "missing_dbf":
        files = [("file", (k, v)) for k, v in parts.items() if not k.endswith(".dbf")]
    elif case == "truncated_dbf":
        dbf = parts["JSPOINT.dbf"]
        files = {"file": ("delivery.zip", zipped({**parts, "JSPOINT.dbf": dbf[:-40]}))}
    elif case == "unknown_crs":
        files = {"file": ("delivery.zip", zipped({**parts, "JSPOINT.prj": b'PROJCS["nonsense",FOO[1]]'}))}
        code = "crs"
    elif case == "bad_suffix":
        files = {"file": ("delivery.exe", b"MZ\x90\x00")}
    elif case == "text_as_gpkg":
        files = {"file": ("delivery.gpkg", b"hello")}
    elif case == "xlsx_bomb":
        files = {"file": ("points.xlsx", zipped({"[Content_Types].xml": b"<Types/>",
                                                 "xl/worksheets/sheet1.xml": b" " * (8 << 20)}))}
        code, status = "payload_too_large", 413
    body = _bilingual(_post(api, files), status, code)
    expected = {"non_zip": "is not a .zip file", "empty_zip": "empty", "traversal": "traversal",
                "absolute": "traversal", "bomb": "zip bomb", "truncated_shp": "truncated", "missing_shx": ".shx",
                "missing_dbf": ".dbf", "truncated_dbf": "truncated", "unknown_crs": "unknown coordinate",
                "bad_suffix": "unsupported file type", "text_as_gpkg": "does not match",
                "xlsx_bomb": "zip bomb"}[case]
    assert expected in body["message_en"], body
    assert "Traceback" not in str(body)


def test_traversal_in_the_uploaded_file_name(api, unchanged):
    res = _post(api, {"file": ("../../evil.zip", zipped({"a.txt": b"x"}))})
    # the multipart file name itself may carry a path: refused, never written outside the upload dir
    assert "illegal file name" in _bilingual(res, 400)["message_en"]


def test_unknown_job_and_format_are_404(api):
    hdr = {"Authorization": f"Bearer {api['admin']}"}
    _bilingual(httpx.get(api["url"] + "/api/ingest/" + "0" * 32, headers=hdr), 404, "not_found")
    _bilingual(httpx.get(api["url"] + "/api/ingest/../etc", headers=hdr), 404)
    _bilingual(httpx.get(api["url"] + "/api/ingest/" + "0" * 32 + "/report.pdf", headers=hdr), 404)


def test_profiles_are_listed(api):
    res = httpx.get(api["url"] + "/api/ingest/profiles", headers={"Authorization": f"Bearer {api['viewer']}"})
    assert res.status_code == 200
    ids = {p["id"] for p in res.json()}
    assert "cjj61-pipeline" in ids and all(p["title_zh"] and p["title_en"] for p in res.json())


def test_valid_prj_passes_preflight(tmp_path):
    from cim.settings import IngestSettings
    from ingest.service import upload

    parts = shapefile_set(tmp_path)
    parts["JSPOINT.prj"] = PRJ_4546.encode()
    z = tmp_path / "ok.zip"
    z.write_bytes(zipped(parts))
    upload.preflight([z], IngestSettings())  # no exception: a complete, known-CRS set

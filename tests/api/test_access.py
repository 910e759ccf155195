"""Access control over HTTP: the shared check guards the API; errors are bilingual."""

from __future__ import annotations

import httpx

from cim import auth
from cim.auth import Role
from cim.settings import AuthSettings


def _token(conn, role: Role, counties=()) -> str:
    with conn.cursor() as cur:
        tok = auth.create_token(cur, name=f"http-{role.value}", role=role, counties=list(counties))
    conn.commit()
    return tok.secret


def test_anonymous_reads_are_off_by_default(live_app, conn):
    base = live_app()
    res = httpx.get(base + "/api/layers")
    assert res.status_code == 401
    body = res.json()
    assert body["code"] == "unauthenticated" and body["message_zh"] and body["message_en"]
    assert res.headers["www-authenticate"] == "Bearer"

    viewer = _token(conn, Role.viewer)
    ok = httpx.get(base + "/api/layers", headers={"Authorization": f"Bearer {viewer}"})
    assert ok.status_code == 200
    assert {layer["id"] for layer in ok.json()} >= {"buildings", "gas_pipes"}

    bad = httpx.get(base + "/api/layers", headers={"Authorization": "Bearer cim_00000000_forged"})
    assert bad.status_code == 401


def test_public_read_setting(live_app):
    base = live_app(auth=AuthSettings(public_read=True))
    res = httpx.get(base + "/api/versions")
    assert res.status_code == 200
    assert set(res.json()) >= {"buildings", "pipeline_segments", "streetlights"}


def test_unknown_path_is_a_bilingual_404(live_app):
    base = live_app(auth=AuthSettings(public_read=True))
    res = httpx.get(base + "/api/no-such-thing")
    assert res.status_code == 404
    assert res.json()["message_zh"] == "资源不存在"

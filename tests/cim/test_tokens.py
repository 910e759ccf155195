"""Tokens: created, hashed at rest, revoked, expired; county scoping by the shared check; audit."""

from __future__ import annotations

import hashlib
import json

import pytest

from cim import auth
from cim.auth import Action, Principal, Role
from cim.errors import Forbidden, InvalidInput, Unauthenticated


def test_cli_create_list_revoke(cli, conn):
    res = cli("token", "create", "--role", "uploader", "--county", "430703", "--expires", "30", "--name", "鼎城测量队",
              check=True)
    secret = res.stdout.strip()
    assert secret.startswith("cim_") and len(secret) > 40
    with conn.cursor() as cur:
        # hashed at rest: the secret itself is nowhere in the table
        cur.execute("SELECT id, token_hash, counties, expires_at IS NOT NULL FROM cim.api_token "
                    "WHERE name = '鼎城测量队'")
        tid, digest, counties, expires = cur.fetchone()
        assert bytes(digest) == hashlib.sha256(secret.encode()).digest()
        assert counties == ["430703"] and expires
        cur.execute("SELECT count(*) FROM cim.api_token t WHERE t::text LIKE %s", (f"%{secret[-20:]}%",))
        assert cur.fetchone()[0] == 0
        who = auth.authenticate(cur, secret)
        assert who.role is Role.uploader and who.counties == {"430703"}
    conn.commit()

    listed = json.loads(cli("token", "list", "--json", check=True).stdout)
    row = next(r for r in listed if r["id"] == tid)
    assert "token_hash" not in row and row["revoked_at"] is None

    cli("token", "revoke", str(tid), check=True)
    with conn.cursor() as cur, pytest.raises(Unauthenticated):
        auth.authenticate(cur, secret)
    conn.rollback()
    assert cli("token", "revoke", str(tid)).returncode == 1  # already revoked

    with conn.cursor() as cur:
        cur.execute("SELECT action FROM cim.audit_log WHERE target = %s ORDER BY id", (f"token:{tid}",))
        assert [r[0] for r in cur.fetchall()] == ["token.create", "token.revoke"]


def test_uploader_needs_a_county(cli):
    res = cli("token", "create", "--role", "uploader")
    assert res.returncode == 2 and "--county" in res.stderr


def test_expired_and_unknown_tokens(conn):
    with conn.cursor() as cur:
        tok = auth.create_token(cur, name="old", role=Role.viewer)
        cur.execute("UPDATE cim.api_token SET expires_at = now() - interval '1 day' WHERE id = %s", (tok.id,))
        with pytest.raises(Unauthenticated):
            auth.authenticate(cur, tok.secret)
        with pytest.raises(Unauthenticated):
            auth.authenticate(cur, "cim_deadbeef_not-a-token")
        assert auth.authenticate(cur, None).anonymous
        with pytest.raises(InvalidInput):
            auth.create_token(cur, name="bad", role=Role.uploader, counties=["43;DROP"])


UPLOADER = Principal("county-team", Role.uploader, token_id=1, counties=frozenset({"430703"}))


@pytest.mark.parametrize(("who", "action", "county", "public", "allowed"), [
    (auth.ANONYMOUS, Action.read, None, False, False),
    (auth.ANONYMOUS, Action.read, None, True, True),
    (auth.ANONYMOUS, Action.query, None, True, True),
    (auth.ANONYMOUS, Action.write, "430703", True, False),
    (Principal("v", Role.viewer, 2), Action.read, None, False, True),
    (Principal("v", Role.viewer, 2), Action.write, "430703", False, False),
    (Principal("c", Role.client, 3), Action.query, None, False, True),
    (Principal("c", Role.client, 3), Action.admin, None, False, False),
    (UPLOADER, Action.write, "430703", False, True),
    (UPLOADER, Action.write, "430702", False, False),
    (UPLOADER, Action.write, None, False, False),
    (UPLOADER, Action.admin, None, False, False),
    (Principal("a", Role.admin, 4), Action.write, "110101", False, True),
    (Principal("a", Role.admin, 4), Action.admin, None, False, True),
])
def test_the_shared_check(who, action, county, public, allowed):
    if allowed:
        auth.authorize(who, action, county=county, public_read=public)
    else:
        with pytest.raises((Unauthenticated, Forbidden)) as err:
            auth.authorize(who, action, county=county, public_read=public)
        assert err.value.zh and err.value.en

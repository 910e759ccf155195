"""Data versions through their one reader (cim.versions) and the server's one watcher.

- the SQL expression other statements embed gives what :func:`cim.versions.read` gives;
- the heartbeat stamps the versions :func:`cim.versions.read` gives;
- ``/api/versions`` answers from the server's :class:`cim.versions.VersionWatcher`, which a commit
  reaches by ``NOTIFY cim_data_version`` (migration 0030) or the watcher's 1 s poll.
"""

from __future__ import annotations

import time

import httpx
import psycopg2
import pytest

from cim import heartbeat, tiers, versions
from cim.auth import CLI_PRINCIPAL
from cim.settings import AuthSettings, DatabaseSettings


@pytest.fixture(scope="module")
def versions_url(make_database) -> str:
    """A migrated database of this module alone (its writes commit, and bump versions)."""
    return make_database("cim_versions")


def test_the_sql_expression_gives_what_read_gives(conn):
    with conn.cursor() as cur:
        cur.execute("INSERT INTO cim.data_version (source_table, version) VALUES ('versions_test_key', 7)")
        keys = ["versions_test_key", "versions_never_bumped", "streetlight"]
        cur.execute(f"SELECT k.key, {versions.version_sql('k.key')} FROM unnest(%s::text[]) k(key)", (keys,))
        embedded = dict(cur.fetchall())
        read = versions.read(cur, keys)
    assert embedded == read
    assert read["versions_test_key"] == 7 and read["versions_never_bumped"] == 0 and read["streetlight"] >= 1


def test_the_heartbeat_stamps_the_readers_versions(versions_url):
    conn = psycopg2.connect(versions_url)
    try:
        tiers.init(conn, "430722", "汉寿县", principal=CLI_PRINCIPAL)
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO cim.streetlight (pole_no, county_code, geom) "
                        "VALUES ('LD-V0', '430722', ST_SetSRID(ST_MakePoint(111.97, 28.90), 4490))")
        assert heartbeat.beat(conn, interval_s=0.001) is True
        with conn.cursor() as cur:
            cur.execute("SELECT data_versions FROM cim.tier_heartbeat WHERE county_code = '430722'")
            stamped = cur.fetchone()[0]
            current = versions.read(cur)
        conn.rollback()
    finally:
        conn.close()
    assert stamped == current and stamped["streetlight"] >= 2


def _until(get, changed, seconds: float = 10.0):
    """``get()`` again until ``changed(answer)`` or the time is up; the last answer."""
    answer, deadline = get(), time.monotonic() + seconds
    while not changed(answer) and time.monotonic() < deadline:
        time.sleep(0.05)
        answer = get()
    return answer


def test_api_versions_follow_a_commit_through_the_watcher(live_app, versions_url):
    base = live_app(auth=AuthSettings(public_read=True), db=DatabaseSettings(database_url=versions_url))
    with httpx.Client(base_url=base, timeout=30) as http:
        def get() -> dict:
            res = http.get("/api/versions")
            assert res.status_code == 200
            return res.json()

        before = get()
        assert {"streetlights", "buildings"} <= set(before)
        conn = psycopg2.connect(versions_url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("INSERT INTO cim.streetlight (pole_no, county_code, geom) "
                            "VALUES ('LD-V1', '430722', ST_SetSRID(ST_MakePoint(111.97, 28.90), 4490))")
            with conn.cursor() as cur:
                table_version = versions.read(cur, ["streetlight"])["streetlight"]
            conn.rollback()
            after = _until(get, lambda a: a["streetlights"] != before["streetlights"])
            assert after["streetlights"] == before["streetlights"] + 1
            assert after["buildings"] == before["buildings"]            # tables the write did not touch keep theirs

            # the answer is the watcher's: a notification alone (no change to the table) moves it
            with conn, conn.cursor() as cur:
                cur.execute("SELECT pg_notify(%s, %s)", (versions.CHANNEL, f"streetlight:{table_version + 1000}"))
            told = _until(get, lambda a: a["streetlights"] != after["streetlights"])
            assert told["streetlights"] == after["streetlights"] + 1000
            with conn.cursor() as cur:
                assert versions.read(cur, ["streetlight"])["streetlight"] == table_version
        finally:
            conn.close()

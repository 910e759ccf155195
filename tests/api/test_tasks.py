"""Background tasks over HTTP: the server's worker runs the county.changed task a delivery queues."""

from __future__ import annotations

import time

import httpx
import psycopg2

from cim.settings import AuthSettings


def test_server_runs_county_changed_and_reports_tasks(live_app, db_url):
    base = live_app(auth=AuthSettings(public_read=True))
    conn = psycopg2.connect(db_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO cim.delivery (county_code, file_name, sha256, state, submitted_by) "
                        "VALUES ('439999', 't.zip', repeat('c', 64), 'current', 'test') RETURNING id")
            delivery = cur.fetchone()[0]
            cur.execute("SELECT id FROM cim.task WHERE kind = 'county.changed' AND args->>'delivery_id' = %s",
                        (str(delivery),))
            task_id = cur.fetchone()[0]
        deadline = time.monotonic() + 30
        row = httpx.get(f"{base}/api/tasks/{task_id}").json()
        while row["state"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)
            row = httpx.get(f"{base}/api/tasks/{task_id}").json()
        assert row["state"] == "done" and row["result"]["county"] == "439999"
        assert row["worker"] and row["finished_at"]
        listed = httpx.get(f"{base}/api/tasks", params={"kind": "county.changed"}).json()
        assert any(t["id"] == task_id for t in listed)
        missing = httpx.get(f"{base}/api/tasks/99999999")
        assert missing.status_code == 404 and missing.json()["message_zh"]
        assert httpx.get(f"{base}/api/tasks", params={"kind": "Bad Kind"}).status_code in (400, 422)
    finally:
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE cim.task SET state = 'cancelled' WHERE args->>'county' = '439999' AND state = 'queued'")
            cur.execute("DELETE FROM cim.delivery WHERE county_code = '439999'")
        conn.close()

"""Idempotent rescans: new / updated / unchanged / cleared, dismissed entries stay dismissed
unless the evidence changes materially, closed entries whose condition recurs get a new linked
entry, dry runs write nothing, incremental rescans after deliveries evaluate only what changed."""

from __future__ import annotations

from conftest import entries
from plant import geo
from shapely.geometry import MultiPolygon, box

GAS = dict(pressure_class="ZA", diameter_mm=200, material="PE", install_year=2020, start_depth=1.2, end_depth=1.2)


def counts(report, rule):
    c = report.rules[rule]
    return c.new, c.updated, c.unchanged, c.cleared


def move_building(conn, bid, x0, y0, x1, y1):
    with conn.cursor() as cur:
        cur.execute("UPDATE cim.building SET geom = ST_GeomFromEWKT(%s) WHERE id = %s",
                    (geo(MultiPolygon([box(x0, y0, x1, y1)])), bid))
    conn.commit()


def events(conn, hazard_id):
    with conn.cursor() as cur:
        cur.execute("SELECT action, from_status, to_status, changes FROM cim.hazard_event WHERE hazard_id = %s ORDER BY id",
                    (hazard_id,))
        rows = cur.fetchall()
    conn.rollback()
    return rows


def test_rescan_updates_clears_and_never_duplicates(plant, hz_conn, county, run_scan):
    house = plant.building(0, 0, 20, 10, code="H1")
    plant.segment("RQ", (-5, -1.3), (25, -1.3), **GAS)                 # outer wall 1.2 m < 1.5 m
    hz_conn.commit()
    assert counts(run_scan(rule_ids=["G02"]), "G02") == (1, 0, 0, 0)
    assert counts(run_scan(rule_ids=["G02"]), "G02") == (0, 0, 1, 0)   # same finding: unchanged
    [e] = entries(hz_conn, county, "G02")

    move_building(hz_conn, house, 0, 0.2, 20, 10)                      # 1.4 m: still a hazard, new evidence
    assert counts(run_scan(rule_ids=["G02"]), "G02") == (0, 1, 0, 0)
    [u] = entries(hz_conn, county, "G02")
    assert u["id"] == e["id"] and u["evidence"]["measured"] == 1.4 and u["version"] == e["version"] + 1
    assert events(hz_conn, e["id"])[-1][0] == "rescan"
    assert events(hz_conn, e["id"])[-1][3]["measured"] == [1.2, 1.4]

    move_building(hz_conn, house, 0, 1.0, 20, 10)                      # 2.2 m: the condition is gone
    assert counts(run_scan(rule_ids=["G02"]), "G02") == (0, 0, 0, 1)
    [c] = entries(hz_conn, county, "G02")
    assert c["status"] == "pending" and c["condition_cleared"]         # marked, never closed silently
    assert events(hz_conn, e["id"])[-1][0] == "condition_cleared"
    assert counts(run_scan(rule_ids=["G02"]), "G02") == (0, 0, 0, 0)   # marked once

    move_building(hz_conn, house, 0, 0.2, 20, 10)                      # back again: the same entry, unmarked
    assert counts(run_scan(rule_ids=["G02"]), "G02") == (0, 1, 0, 0)
    [b] = entries(hz_conn, county, "G02")
    assert b["id"] == e["id"] and not b["condition_cleared"]


def test_dismissed_stays_dismissed_unless_material(plant, hz_conn, county, run_scan, svc, who):
    house = plant.building(0, 0, 20, 10, code="H2")
    plant.segment("RQ", (-5, -1.3), (25, -1.3), **GAS)
    hz_conn.commit()
    run_scan(rule_ids=["G02"])
    [e] = entries(hz_conn, county, "G02")
    svc.transition(who("supervisor"), e["id"], {"action": "dismiss", "version": e["version"],
                                               "comment": "现场核实：管道有套管保护"})
    assert counts(run_scan(rule_ids=["G02"]), "G02") == (0, 0, 1, 0)   # unchanged evidence: stays dismissed
    move_building(hz_conn, house, 0, 0.05, 20, 10)                     # 1.25 m: within the 0.1 m tolerance
    assert counts(run_scan(rule_ids=["G02"]), "G02") == (0, 0, 1, 0)
    assert [x["status"] for x in entries(hz_conn, county, "G02")] == ["dismissed"]
    move_building(hz_conn, house, 0, -0.5, 20, 10)                     # 0.7 m: a material change
    report = run_scan(rule_ids=["G02"])
    assert counts(report, "G02") == (1, 0, 0, 0) and report.rules["G02"].recurred == 1
    old, new = entries(hz_conn, county, "G02")
    assert old["status"] == "dismissed" and new["status"] == "pending" and new["previous_id"] == old["id"]
    assert new["rule_key"] == old["rule_key"]
    with hz_conn.cursor() as cur:
        cur.execute("SELECT comment FROM cim.hazard_event WHERE hazard_id = %s", (new["id"],))
        assert "不成立后证据实质变化" in cur.fetchone()[0]
    hz_conn.rollback()


def test_closed_entry_recurrence_is_a_new_linked_entry(plant, hz_conn, county, run_scan, svc, who):
    house = plant.building(0, 0, 20, 10, appraisal_grade="C")
    hz_conn.commit()
    run_scan(rule_ids=["B01"])
    [e] = entries(hz_conn, county, "B01")
    staff, boss = who("inspector"), who("supervisor")
    v = e["version"]
    for actor, body in ((staff, {"action": "register"}),
                        (staff, {"action": "start", "fields": {"measures": "加固", "budget": 50000,
                                                               "responsible_person": "张三", "deadline": "2030-01-01",
                                                               "reviewer": "李四"}}),
                        (staff, {"action": "submit", "comment": "加固完成"}),
                        (boss, {"action": "close", "fields": {"verify_result": "合格"}})):
        v = svc.transition(actor, e["id"], {**body, "version": v})["version"]
    assert counts(run_scan(rule_ids=["B01"]), "B01") == (0, 0, 1, 0)   # closed, data not updated yet: no new entry
    with hz_conn.cursor() as cur:                                      # the re-appraisal is loaded: grade B
        cur.execute("UPDATE cim.building SET appraisal_grade = 'B' WHERE id = %s", (house,))
    hz_conn.commit()
    assert counts(run_scan(rule_ids=["B01"]), "B01") == (0, 0, 0, 0)
    [closed] = entries(hz_conn, county, "B01")
    assert closed["status"] == "closed" and closed["condition_cleared"]
    with hz_conn.cursor() as cur:                                      # years later it is grade C again
        cur.execute("UPDATE cim.building SET appraisal_grade = 'C' WHERE id = %s", (house,))
    hz_conn.commit()
    report = run_scan(rule_ids=["B01"])
    assert counts(report, "B01") == (1, 0, 0, 0) and report.rules["B01"].recurred == 1
    old, new = entries(hz_conn, county, "B01")
    assert new["previous_id"] == old["id"] and new["status"] == "pending"
    assert new["number"] != old["number"]


def test_dry_run_writes_nothing(plant, hz_conn, county, run_scan):
    plant.building(0, 0, 20, 10, appraisal_grade="D")
    plant.segment("RQ", (-5, 5), (25, 5), **GAS)
    hz_conn.commit()

    def snapshot():
        with hz_conn.cursor() as cur:
            cur.execute("SELECT (SELECT count(*) FROM cim.hazard), (SELECT count(*) FROM cim.hazard_event), "
                        "(SELECT coalesce(sum(last), 0) FROM cim.hazard_counter), (SELECT count(*) FROM cim.hazard_scan), "
                        "(SELECT count(*) FROM cim.hazard_scan_state), "
                        "(SELECT version FROM cim.data_version WHERE source_table = 'hazard')")
            row = cur.fetchone()
        hz_conn.rollback()
        return row

    before = snapshot()
    report = run_scan(dry_run=True, incremental=True)
    assert report.rules["B01"].new == 1 and report.rules["G01"].new == 1 and report.dry_run
    assert snapshot() == before
    run_scan()
    after = snapshot()
    assert after[0] > before[0] and after[1] > before[1]
    report = run_scan(dry_run=True)
    assert report.totals()["new"] == 0 and report.totals()["unchanged"] == report.totals()["findings"]


def test_numbers_are_consecutive_per_county_and_year(plant, hz_conn, county, run_scan):
    for i in range(5):
        plant.building(i * 20, 0, i * 20 + 10, 10, appraisal_grade="D")
    hz_conn.commit()
    run_scan(rule_ids=["B01"])
    import datetime as dt
    year = dt.date.today().year
    assert sorted(e["number"] for e in entries(hz_conn, county)) == [f"{county}-{year}-{i:05d}" for i in range(1, 6)]


def _gas_delivery(plant, hz_conn, *, moved: float = 0.0, grey: int | None = None):
    """A gas delivery: 20 segments along y = −1.3 (segment 3 moved by ``moved`` m, segment
    ``grey`` of grey cast iron)."""
    plant.new_delivery(["pipe_segment:RQ", "pipe_point:RQ"])
    for i in range(20):
        y = -1.3 - (moved if i == 3 else 0.0)
        plant.segment("RQ", (i * 30.0, y), (i * 30.0 + 30, y), start_exp_no=f"G{i}", end_exp_no=f"G{i + 1}",
                      **{**GAS, "material": "ZT-HK" if i == grey else GAS["material"]})
    plant.make_current(["pipe_segment:RQ", "pipe_point:RQ"])
    hz_conn.commit()


def test_incremental_rescans_follow_deliveries(plant, hz_conn, county, run_scan):
    plant.new_delivery(["building"])
    for i in range(20):
        plant.building(i * 30.0 + 5, 0, i * 30.0 + 25, 10, code=f"H{i}", appraisal_grade="D" if i == 0 else None)
    plant.make_current(["building"])
    _gas_delivery(plant, hz_conn)
    first = run_scan(incremental=True)                                   # no state yet: every rule runs whole
    assert {c.mode for c in first.rules.values()} == {"full"}
    assert first.rules["G02"].new == 20 and first.rules["B01"].new == 1
    again = run_scan(incremental=True)                                   # nothing changed: every rule skipped
    assert {c.mode for c in again.rules.values()} == {"skip"} and again.totals()["findings"] == 0
    before = {e["rule_key"]: e for e in entries(hz_conn, county)}

    _gas_delivery(plant, hz_conn, moved=0.1, grey=7)                     # re-survey: one segment 0.1 m further off,
    report = run_scan(incremental=True)                                  # one found to be grey cast iron
    assert report.rules["G02"].mode == "focus" and report.rules["G01"].mode == "focus"
    assert report.rules["B01"].mode == "skip" and report.rules["G06"].mode == "focus"
    assert counts(report, "G02") == (0, 1, 1, 0)                          # only the two changed segments evaluated
    assert counts(report, "G06") == (1, 0, 0, 0)
    after = {e["rule_key"]: e for e in entries(hz_conn, county) if e["rule_id"] != "G06"}
    assert set(after) == set(before)
    changed = [k for k in after if after[k]["evidence"] != before[k]["evidence"]]
    assert len(changed) == 1 and after[changed[0]]["evidence"]["measured"] == 1.3
    with hz_conn.cursor() as cur:                                         # every entry names the current rows
        cur.execute("SELECT count(*) FROM cim.hazard h, jsonb_array_elements(h.facility_refs) r "
                    "JOIN cim.pipe_segment s ON s.id = (r ->> 'id')::bigint "
                    "WHERE h.county_code = %s AND h.rule_id = 'G02' AND r ->> 'table' = 'pipe_segment' "
                    "AND NOT s.is_current", (county,))
        assert cur.fetchone()[0] == 0
        # the 19 entries whose finding did not change took the new ids with an event and a new version
        cur.execute("SELECT h.id, h.version, e.version, e.changes -> 'facility_refs' FROM cim.hazard h "
                    "JOIN cim.hazard_event e ON e.hazard_id = h.id AND e.action = 'refs' "
                    "WHERE h.county_code = %s AND h.rule_id = 'G02'", (county,))
        refs = cur.fetchall()
        assert len(refs) == 19 and len({r[0] for r in refs}) == 19
        assert all(v == ev and old != new for _, v, ev, (old, new) in refs)
        was = {e["id"]: e["version"] for e in before.values()}
        assert all(v == was[i] + 1 for i, v, _, _ in refs)
    hz_conn.rollback()
    whole = run_scan()                                                    # a whole scan agrees with the focused one
    assert whole.totals()["updated"] == 0 and whole.totals()["new"] == 0 and whole.totals()["cleared"] == 0

    _gas_delivery(plant, hz_conn)                                         # back as first delivered: G06 cleared,
    report = run_scan(incremental=True)                                   # G02 back to 1.2 m
    assert counts(report, "G06") == (0, 0, 0, 1) and counts(report, "G02") == (0, 1, 1, 0)


def _water_delivery(plant, hz_conn, *, near: bool):
    """A water delivery: 10 segments of DN100 2 m clear of the gas line (segment 4, along gas
    segments 8 and 9, only 0.3 m clear when ``near``)."""
    plant.new_delivery(["pipe_segment:JS", "pipe_point:JS"])
    for i in range(10):
        y = -1.3 + (0.1 + (0.3 if near and i == 4 else 2.0) + 0.05)
        plant.segment("JS", (i * 60.0, y), (i * 60.0 + 60, y), start_exp_no=f"W{i}", end_exp_no=f"W{i + 1}",
                      diameter_mm=100)
    plant.make_current(["pipe_segment:JS", "pipe_point:JS"])
    hz_conn.commit()


def test_incremental_rescan_pairs_a_changed_pipe_with_unchanged_gas(plant, hz_conn, county, run_scan):
    # only the other network is re-delivered: the focused G03 probes the gas segments near the
    # changed water pipe, and agrees with a whole scan
    _gas_delivery(plant, hz_conn)
    _water_delivery(plant, hz_conn, near=False)
    first = run_scan(incremental=True)
    assert first.rules["G03"].mode == "full" and first.rules["G03"].findings == 0
    _water_delivery(plant, hz_conn, near=True)
    report = run_scan(incremental=True)
    assert report.rules["G03"].mode == "focus" and report.rules["G01"].mode == "skip"
    assert counts(report, "G03") == (2, 0, 0, 0)
    got = [e for e in entries(hz_conn, county) if e["rule_id"] == "G03"]
    assert sorted(e["rule_key"] for e in got) == ["G03|pipe_segment:JS:W4>W5|pipe_segment:RQ:G8>G9",
                                                  "G03|pipe_segment:JS:W4>W5|pipe_segment:RQ:G9>G10"]
    assert all(e["evidence"]["measured"] == 0.3 for e in got)
    whole = run_scan()
    assert whole.totals()["updated"] == 0 and whole.totals()["new"] == 0 and whole.totals()["cleared"] == 0
    _water_delivery(plant, hz_conn, near=False)                           # moved back: both cleared
    report = run_scan(incremental=True)
    assert report.rules["G03"].mode == "focus" and counts(report, "G03") == (0, 0, 0, 2)

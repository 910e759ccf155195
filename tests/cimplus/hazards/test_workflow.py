"""The workflow's role matrix: every action allowed or forbidden for every role (and outside
the caller's area), actions refused in states they do not start from, stale versions, required
fields and comments, events and audit rows, manual registration and gap-free numbers."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from conftest import entries

from cim.auth import ANONYMOUS
from cim.errors import Conflict, Forbidden, InvalidInput, Unauthenticated
from cimplus.hazards import config

ROLES = ("admin", "supervisor", "inspector", "city", "province", "uploader", "viewer", "client")
SIX = {"measures": "更换管段", "budget": 12000, "responsible_person": "王五", "deadline": "2031-06-30",
       "reviewer": "赵六"}
# action → (state it starts from, body, roles allowed in their own county / city / province)
MATRIX = {
    "register": ("pending", {}, {"admin", "supervisor", "inspector"}),
    "dismiss": ("pending", {"comment": "核实不属实"}, {"admin", "supervisor"}),
    "reopen": ("dismissed", {"comment": "复核属实"}, {"admin", "supervisor"}),
    "start": ("registered", {"fields": SIX}, {"admin", "supervisor", "inspector"}),
    "progress": ("rectifying", {"comment": "已完成开挖"}, {"admin", "supervisor", "inspector"}),
    "submit": ("rectifying", {"comment": "整改完成"}, {"admin", "supervisor", "inspector"}),
    "reject": ("awaiting_acceptance", {"comment": "回填不实"}, {"admin", "supervisor"}),
    "close": ("awaiting_acceptance", {"fields": {"verify_result": "验收合格"}}, {"admin", "supervisor"}),
    "update": ("registered", {"fields": {"location": "建设路 12 号"}}, {"admin", "supervisor", "inspector"}),
    "regrade": ("registered", {"fields": {"risk_level": 1}, "comment": "升级"}, {"admin", "supervisor"}),
    "supervise:county": ("registered", {"fields": {"supervision": "county"}},
                         {"admin", "supervisor", "city", "province"}),
    "supervise:city": ("registered", {"fields": {"supervision": "city"}}, {"admin", "city", "province"}),
    "supervise:province": ("registered", {"fields": {"supervision": "province"}}, {"admin", "province"}),
}


def scope(role: str, county: str) -> tuple[str, ...]:
    return {"city": (county[:4] + "00",), "province": (county[:2] + "0000",), "admin": (), "viewer": (),
            "client": ()}.get(role, (county,))


def make_entry(conn, county: str, status: str, **fields) -> dict:
    """An entry in a given state, written directly."""
    values = {"number": f"{county}-T-{dt.datetime.now().timestamp()}-{status}", "source": "patrol",
              "facility_type": "gas_pipe", "county_code": county, "title": "测试隐患", "risk_level": 3,
              "found_by": "test", "status": status, **fields}
    cols = ", ".join(values)
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO cim.hazard ({cols}, shape, geom) VALUES ({', '.join(['%s'] * len(values))}, "
                    "ST_SetSRID(ST_MakePoint(111.7, 29.1), 4490), ST_SetSRID(ST_MakePoint(111.7, 29.1), 4490)) "
                    "RETURNING id, version", list(values.values()))
        hid, version = cur.fetchone()
    conn.commit()
    return {"id": hid, "version": version}


def body_for(action: str, spec: tuple, version: int) -> dict:
    name = action.split(":")[0]
    return {"action": name, "version": version, **spec[1]}


@pytest.mark.parametrize("action", sorted(MATRIX))
@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(svc, hz_conn, county, who, role, action):
    state, _, allowed = MATRIX[action]
    e = make_entry(hz_conn, county, state)
    principal = who(role, *scope(role, county))
    body = body_for(action, MATRIX[action], e["version"])
    if role in allowed:
        out = svc.transition(principal, e["id"], body)
        assert out["version"] == e["version"] + 1
        ev = out["events"][-1]
        assert ev["action"] == body["action"] and ev["actor"] == principal.name and ev["from_status"] == state
        assert ev["to_status"] == out["status"] and ev["role"] == role
    else:
        with pytest.raises(Forbidden):
            svc.transition(principal, e["id"], body)
        with hz_conn.cursor() as cur:                               # nothing changed, no event
            cur.execute("SELECT status, version, (SELECT count(*) FROM cim.hazard_event WHERE hazard_id = h.id) "
                        "FROM cim.hazard h WHERE id = %s", (e["id"],))
            assert cur.fetchone() == (state, e["version"], 0)
        hz_conn.rollback()


@pytest.mark.parametrize("role,codes", [("inspector", ("439999",)), ("supervisor", ("439999",)),
                                        ("city", ("439900",)), ("province", ("420000",))])
def test_no_action_outside_the_callers_area(svc, hz_conn, county, who, role, codes):
    e = make_entry(hz_conn, "449901", "registered")
    for action in ("update", "regrade", "supervise:county"):
        with pytest.raises(Forbidden):
            svc.transition(who(role, *codes), e["id"], body_for(action, MATRIX[action], e["version"]))


def test_anonymous_is_refused(svc, hz_conn, county):
    e = make_entry(hz_conn, county, "registered")
    with pytest.raises(Unauthenticated):
        svc.transition(ANONYMOUS, e["id"], {"action": "update", "version": e["version"], "fields": {"location": "x"}})


def test_city_cannot_lift_province_supervision(svc, hz_conn, county, who):
    e = make_entry(hz_conn, county, "rectifying", supervision="province")
    with pytest.raises(Forbidden):
        svc.transition(who("city", county[:4] + "00"), e["id"],
                       {"action": "supervise", "version": e["version"], "fields": {"supervision": "none"}})
    out = svc.transition(who("province", county[:2] + "0000"), e["id"],
                         {"action": "supervise", "version": e["version"], "fields": {"supervision": "none"}})
    assert out["supervision"] == "none" and out["events"][-1]["changes"]["supervision"] == ["province", "none"]


@pytest.mark.parametrize("action", sorted(config.ledger().actions))
def test_actions_only_from_their_states(svc, hz_conn, county, who, action):
    act = config.ledger().actions[action]
    admin = who("admin")
    for state in config.ledger().statuses:
        if state in act.from_:
            continue
        e = make_entry(hz_conn, county, state)
        spec = MATRIX.get(action) or MATRIX["supervise:county"]
        with pytest.raises(Conflict) as err:
            svc.transition(admin, e["id"], body_for(action, spec, e["version"]))
        assert err.value.detail["current"]["status"] == state


def test_stale_version_is_a_conflict_with_the_current_state(svc, hz_conn, county, who):
    e = make_entry(hz_conn, county, "registered")
    staff = who("inspector")
    svc.transition(staff, e["id"], {"action": "update", "version": e["version"], "fields": {"location": "A"}})
    with pytest.raises(Conflict) as err:
        svc.transition(staff, e["id"], {"action": "update", "version": e["version"], "fields": {"location": "B"}})
    current = err.value.detail["current"]
    assert current["version"] == e["version"] + 1 and current["location"] == "A"
    assert "update" in current["allowed_actions"]


def test_required_fields_comments_and_values(svc, hz_conn, county, who):
    staff, boss = who("inspector"), who("supervisor")
    e = make_entry(hz_conn, county, "registered")
    with pytest.raises(InvalidInput) as err:                          # 六定 first
        svc.transition(staff, e["id"], {"action": "start", "version": e["version"], "fields": {"measures": "x"}})
    assert set(err.value.detail["missing"]) == {"budget", "responsible_person", "deadline", "reviewer"}
    bad = [({"action": "update", "fields": {"risk_level": 1}}, "may not set"),               # not this action's field
           ({"action": "regrade", "fields": {"risk_level": 7}, "comment": "x"}, "1–4"),
           ({"action": "update", "fields": {"deadline": "2030-02-30"}}, "date"),
           ({"action": "update", "fields": {"budget": -5}}, "between"),
           ({"action": "update", "fields": {"location": "a\x00b"}}, "control"),
           ({"action": "regrade", "fields": {"risk_level": 2}}, "comment"),
           ({"action": "fly"}, "unknown action"),
           ({"action": "update", "version": "1"}, "version")]
    for body, why in bad:
        who_ = boss if body["action"] == "regrade" else staff
        with pytest.raises(InvalidInput) as err:
            svc.transition(who_, e["id"], {"version": e["version"], **body})
        assert why in err.value.en
    p = make_entry(hz_conn, county, "awaiting_acceptance")
    with pytest.raises(InvalidInput):
        svc.transition(boss, p["id"], {"action": "close", "version": p["version"]})


def test_full_lifecycle_events_and_audit(svc, hz_conn, county, who, hz_url):
    staff, boss = who("inspector"), who("supervisor")
    e = make_entry(hz_conn, county, "pending")
    v = e["version"]
    steps = [(staff, {"action": "register", "fields": {"risk_level": 2, "hazard_class": "major"}}),
             (staff, {"action": "start", "fields": SIX}),
             (staff, {"action": "progress", "comment": "开挖完成"}),
             (staff, {"action": "submit", "comment": "整改完成"}),
             (boss, {"action": "reject", "comment": "回填不实", "fields": {"verify_result": "回填不实"}}),
             (staff, {"action": "submit", "comment": "重新回填"}),
             (boss, {"action": "close", "fields": {"verify_result": "合格"}})]
    for principal, body in steps:
        out = svc.transition(principal, e["id"], {**body, "version": v})
        v = out["version"]
    assert out["status"] == "closed" and out["closed_by"] == boss.name and out["verify_result"] == "合格"
    assert [ev["to_status"] for ev in out["events"]] == ["registered", "rectifying", "rectifying",
                                                       "awaiting_acceptance", "rectifying", "awaiting_acceptance",
                                                       "closed"]
    assert out["events"][0]["changes"]["risk_level"] == [3, 2]
    assert [ev["version"] for ev in out["events"]] == list(range(e["version"] + 1, v + 1))
    with hz_conn.cursor() as cur:
        cur.execute("SELECT action, actor, county_code FROM cim.audit_log WHERE target = %s ORDER BY id",
                    (f"hazard:{e['id']}",))
        audit = cur.fetchall()
    hz_conn.rollback()
    assert [a[0] for a in audit] == [f"hazard.{s[1]['action']}" for s in steps] and audit[0][2] == county


def test_overdue_is_a_flag_from_the_deadline(svc, hz_conn, county, who):
    late = make_entry(hz_conn, county, "rectifying", deadline=dt.date.today() - dt.timedelta(days=1))
    fine = make_entry(hz_conn, county, "rectifying", deadline=dt.date.today() + dt.timedelta(days=1))
    done = make_entry(hz_conn, county, "closed", deadline=dt.date.today() - dt.timedelta(days=10))
    assert svc.get(late["id"])["overdue"] and not svc.get(fine["id"])["overdue"] and not svc.get(done["id"])["overdue"]
    page = svc.list({"county": county, "overdue": "true"})
    assert [f["id"] for f in page["features"]] == [late["id"]]
    assert svc.get(late["id"])["status"] == "rectifying"                  # a flag, not a state


GEOM = {"type": "Point", "coordinates": [111.7001, 29.1001]}


def test_manual_registration(svc, hz_conn, county, who, plant):
    seg = plant.segment("RQ", (0, 0), (30, 0), pressure_class="ZB")
    hz_conn.commit()
    out = svc.register(who("inspector"), {"county": county, "source": "hotline", "facility_type": "gas_pipe",
                                          "title": "群众反映燃气异味", "risk_level": 2, "geometry": GEOM,
                                          "facility_refs": [{"table": "pipe_segment", "id": seg}],
                                          "deadline": "2031-01-01", "description": "12345 工单"})
    assert out["status"] == "registered" and out["source"] == "hotline" and out["number"].startswith(f"{county}-")
    assert out["facility_refs"][0]["key"].startswith("pipe_segment:RQ:")
    assert out["events"][0]["action"] == "register_manual" and out["marker"]["type"] == "Point"
    with pytest.raises(Forbidden):
        svc.register(who("inspector", "449999"), {"county": county, "facility_type": "gas_pipe", "title": "x",
                                                 "risk_level": 2, "geometry": GEOM})
    with pytest.raises(Forbidden):
        svc.register(who("viewer"), {"county": county, "facility_type": "gas_pipe", "title": "x", "risk_level": 2,
                                     "geometry": GEOM})
    for bad in ({"geometry": {"type": "Point", "coordinates": [0, 0]}},
                {"geometry": {"type": "Polygon", "coordinates": [[[111.7, 29.1], [111.8, 29.2], [111.8, 29.1],
                                                                  [111.7, 29.2], [111.7, 29.1]]]}},
                {"geometry": "POINT(1 2)"}, {"facility_type": "spaceship"}, {"source": "rule"},
                {"facility_refs": [{"table": "pipe_segment", "id": 987654321}]}, {"county": "43"},
                {"risk_level": True}, {"number": "x"}):
        with pytest.raises(InvalidInput):
            svc.register(who("inspector"), {"county": county, "facility_type": "gas_pipe", "title": "x",
                                            "risk_level": 2, "geometry": GEOM, **bad})


def test_numbers_stay_gap_free_under_concurrency(svc, hz_conn, county, who):
    staff = who("inspector")
    out, errors = [], []

    def one(i: int) -> None:
        try:
            data = {"county": county, "facility_type": "manhole", "title": f"井盖缺失 {i}", "risk_level": 1,
                    "geometry": GEOM}
            if i % 4 == 3:
                data["facility_refs"] = [{"table": "building", "id": 10 ** 12}]   # refused: takes no number
            out.append(svc.register(staff, data)["number"])
        except InvalidInput as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    year = dt.date.today().year
    assert len(errors) == 3
    assert sorted(out) == [f"{county}-{year}-{i:05d}" for i in range(1, 10)]
    assert len(entries(hz_conn, county)) == 9


def test_a_rolled_back_registration_gives_its_number_back(svc, county):
    from cimplus.hazards.workflow import next_number

    year = dt.date.today().year
    with svc.session() as s:
        assert next_number(s, county, year) == f"{county}-{year}-00001"
        s.rollback()
    with svc.session() as s:
        assert next_number(s, county, year) == f"{county}-{year}-00001"
        s.commit()
    with svc.session() as s:
        assert next_number(s, county, year) == f"{county}-{year}-00002"
        s.rollback()

"""The mapping assistant on deliveries no profile was written for (generated here): renamed
fields, pinyin abbreviations, years under an era field, near-miss codes, layer names such as
YS_LIN / YSX / 雨水线; the mapping table in the JSON and HTML reports; mappings the user gives
(``--map``, ``--map-value``) and the county mapping saved in the database and used for the
county's next delivery."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: sibling helpers
from fixtures import E0, N0, write_shapefile, write_unprofiled_county, zip_folder  # noqa: E402
from loadkit import county_code  # noqa: E402

from cim.auth import CLI_PRINCIPAL  # noqa: E402
from cim.errors import InvalidInput  # noqa: E402
from cim.settings import DatabaseSettings, IngestSettings, Settings  # noqa: E402
from ingest import pipeline  # noqa: E402
from ingest.mapping import county as county_mapping  # noqa: E402
from ingest.mapping.assistant import initials, layer_hint, name_evidence  # noqa: E402
from ingest.mapping.normalize import load_dictionaries  # noqa: E402
from ingest.mapping.profile import FieldSpec, codelists_for, load_profiles  # noqa: E402
from ingest.model import UserMapping  # noqa: E402
from ingest.pipeline import read_delivery  # noqa: E402
from ingest.report import report_dict, write_html  # noqa: E402
from ingest.validate import validate  # noqa: E402


def _rows(batch) -> dict[str, dict]:
    return {r["source_field"]: r for r in batch.mapping.rows()}


def _buildings(folder: Path, frame: pd.DataFrame, name: str = "JZ_buildings") -> Path:
    i = np.arange(len(frame))
    x, y = E0 + (i % 20) * 40.0, N0 + 200 + (i // 20) * 40.0
    write_shapefile(folder, name, frame, shapely.box(x, y, x + 20, y + 15))
    return zip_folder(folder, folder.parent / f"{folder.name}.zip")


@pytest.fixture(scope="module")
def county_zip(tmp_path_factory) -> Path:
    return write_unprofiled_county(tmp_path_factory.mktemp("unprofiled") / "county")


def test_unprofiled_county_delivery_maps_with_proposals_and_no_errors(county_zip, tmp_path, artifacts):
    d = read_delivery(county_zip, county="430702")
    by_layer = {b.source_layer: b for b in d.batches}
    assert set(by_layer) == {"JZ_buildings", "YS_PNT", "YS_LIN", "RQ_LIN", "JS_LIN"}

    b = by_layer["JZ_buildings"]
    rows = _rows(b)
    assert rows["建筑层数"]["target"] == "floors_above" and rows["建筑层数"]["how"] == "proposed"
    assert "层数" in rows["建筑层数"]["reason"] and rows["建筑层数"]["confidence"] >= 0.6
    assert rows["建筑结构"]["target"] == "structure_type" and rows["建筑结构"]["how"] == "proposed"
    assert rows["建筑编号"] == {**rows["建筑编号"], "target": "code", "how": "alias", "confidence": 1.0}
    # a year under the era field fills the year, the era is derived from it
    assert rows["建成年代"]["target"] == "build_year" and rows["建成年代"]["how"] == "proposed"
    years = b.frame["build_year"].astype("float64")
    assert years.between(1975, 2022).all()
    era = dict(zip(years, b.frame["build_era"], strict=True))
    assert {era[y] for y in era if y <= 1980} <= {"1"} and {era[y] for y in era if 2001 <= y <= 2010} <= {"4"}
    assert set(b.frame["structure_type"]) <= {"QT", "GH"} and b.frame["floors_above"].notna().all()
    assert all(len(r["samples"]) >= 1 for r in rows.values())

    nets = {name: (by_layer[name].target, set(by_layer[name].frame["network"])) for name in ("YS_LIN", "RQ_LIN", "JS_LIN")}
    assert nets["YS_LIN"] == ("pipe_segment", {"PS"}) and set(by_layer["YS_LIN"].frame["subtype"]) == {"YS"}
    assert nets["RQ_LIN"] == ("pipe_segment", {"RQ"}) and nets["JS_LIN"] == ("pipe_segment", {"JS"})
    assert by_layer["YS_LIN"].mapping.decided_by == "proposed" and "YS_LIN" in by_layer["YS_LIN"].mapping.reason

    report = validate(d)
    assert not report.has_errors, [f.message_en for f in report.findings if f.severity.value == "error"][:5]
    data = report_dict(report)
    layer = next(x for x in data["summary"]["layers"] if x["source_layer"] == "JZ_buildings")
    assert {tuple(sorted(m)) for m in layer["mapping"]} == {
        ("confidence", "how", "reason", "samples", "source_field", "target")}
    assert {m["how"] for m in layer["mapping"]} >= {"alias", "proposed"}
    json.dumps(data, ensure_ascii=False)
    html = write_html(report, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "字段映射" in html and "建筑层数" in html and "floors_above" in html and "how-proposed" in html
    (artifacts / "ingest-mapping-report.html").write_text(html, encoding="utf-8")


@pytest.mark.parametrize(("name", "expected"), [
    ("YS_LIN", ("YS", "line")), ("YSX", ("YS", "line")), ("雨水线", ("YS", "line")), ("WS_PNT", ("WS", "point")),
    ("污水管点", ("WS", "point")), ("RQ-LINE", ("RQ", "line")), ("county_JS_PT", ("JS", "point")),
    ("JZ_buildings", None), ("LH_POLY", None), ("道路线", None)])
def test_layer_names_give_network_and_role(name, expected):
    profiles = load_profiles()
    hint = layer_hint(name, load_dictionaries(), codelists_for(profiles["cjj61-pipeline"])["network"].map)
    assert (hint[:2] if hint else None) == expected


def test_name_evidence_pinyin_suffix_and_similarity():
    assert initials("房屋结构") == "fwjg"
    score, why = name_evidence("FWJG", "structure_type", FieldSpec(aliases=["房屋结构"]))
    assert score >= 0.8 and "拼音" in why
    score, why = name_evidence("建筑层数", "floors_above", FieldSpec(aliases=["地上层数", "层数"]))
    assert score >= 0.8 and "层数" in why
    score, _ = name_evidence("建筑结构", "structure_type", FieldSpec(aliases=["房屋结构"]))
    assert 0.6 <= score < 0.8
    assert name_evidence("备注", "floors_above", FieldSpec(aliases=["地上层数", "层数"]))[0] == 0


def test_renamed_fields_abbreviations_and_value_profiles(tmp_path):
    rng = np.random.default_rng(5)
    n = 40
    frame = pd.DataFrame({"编号": [f"B{k}" for k in range(n)], "楼层数": rng.integers(1, 20, n),
                          "FWJG": rng.choice(["砖混", "框架"], n),          # pinyin initials of 房屋结构
                          "字段7": rng.choice(["住宅", "商业", "办公"], n),  # values of the building-use dictionary
                          "竣工": rng.integers(1990, 2020, n),                # years by their values
                          "备注": ["无"] * n})
    d = read_delivery(_buildings(tmp_path / "renamed", frame), county="430702")
    (b,) = d.batches
    rows = _rows(b)
    assert rows["楼层数"]["target"] == "floors_above"
    assert rows["FWJG"]["target"] == "structure_type" and "拼音" in rows["FWJG"]["reason"]
    assert rows["字段7"]["target"] == "use_code" and "dict_building_use" in rows["字段7"]["reason"]
    assert rows["竣工"]["target"] == "build_year" and "年份" in rows["竣工"]["reason"]
    assert rows["备注"]["how"] == "unmapped" and rows["备注"]["target"] is None
    assert set(b.frame["use_code"]) == {"ZZ", "PF", "BG"}


def test_near_miss_codes_are_proposed_not_accepted(tmp_path):
    n = 30
    frame = pd.DataFrame({"编号": [f"B{k}" for k in range(n)], "地上层数": [3] * n,
                          "结构类型": ["框架"] * 20 + ["框架结构体"] * 6 + ["砖混"] * 4})
    d = read_delivery(_buildings(tmp_path / "near", frame), county="430702")
    (b,) = d.batches
    proposed = [v for v in b.mapping.values if v.how == "proposed"]
    assert [(v.column, v.value, v.code, v.count) for v in proposed] == [("structure_type", "框架结构体", "GH", 6)]
    assert "未采用" in proposed[0].reason
    report = validate(d)
    q22 = [f for f in report.findings if f.rule_id == "Q22"]
    assert len(q22) == 6 and {f.value for f in q22} == {"框架结构体"}          # not silently accepted
    layer = report_dict(report)["summary"]["layers"][0]
    assert layer["value_mappings"][0]["how"] == "proposed"


def test_user_mapping_wins_and_value_mapping_applies(tmp_path):
    n = 20
    frame = pd.DataFrame({"编号": [f"B{k}" for k in range(n)], "层": [2] * n, "地下": [1] * n,
                          "结构类型": ["砖木"] * 10 + ["框架"] * 10})
    path = _buildings(tmp_path / "user", frame)
    user = county_mapping.parse_options(["层=floors_above", "地下=floors_below"], ["structure_type:砖木=TM"])
    (b,) = read_delivery(path, county="430702", user=user).batches
    rows = _rows(b)
    assert (rows["层"]["target"], rows["层"]["how"], rows["层"]["confidence"]) == ("floors_above", "user", 1.0)
    assert rows["地下"]["target"] == "floors_below" and rows["地下"]["how"] == "user"
    assert list(b.frame["structure_type"]) == ["TM"] * 10 + ["GH"] * 10
    assert [(v.value, v.code, v.how, v.count) for v in b.mapping.values] == [("砖木", "TM", "user", 10)]
    assert not validate(read_delivery(path, county="430702", user=user)).has_errors


def test_map_options_are_checked():
    with pytest.raises(InvalidInput):
        county_mapping.parse_options(["建筑层数"], None)
    with pytest.raises(InvalidInput):
        county_mapping.parse_options(None, ["structure_type=QT"])
    with pytest.raises(InvalidInput) as err:
        county_mapping.parse_options(["建筑层数=no_such_column"], None)
    assert "no_such_column" in err.value.en


def test_named_profile_is_a_starting_point_not_a_refusal(tmp_path):
    frame = pd.DataFrame({"建筑编号": ["A1", "A2", "A3"], "地上层数": [1, 2, 3], "结构类型": ["框架"] * 3})
    d = read_delivery(_buildings(tmp_path / "named", frame), profile="green-space", county="430702")
    (b,) = d.batches
    assert b.target == "building" and b.profile_id == "buildings"
    assert any("green-space" in n.message_en and "does not fit" in n.message_en for n in d.notes)


def test_saved_county_mapping_is_used_for_the_next_delivery(conn, db_url, tmp_path):
    county = county_code()
    n = 12
    frame = pd.DataFrame({"编号": [f"B{k}" for k in range(n)], "层": [4] * n, "字段X": ["砖木"] * n})
    path = _buildings(tmp_path / "first", frame)
    settings = Settings(db=DatabaseSettings(database_url=db_url, home=tmp_path / "home"),
                        ingest=IngestSettings(archive_dir=tmp_path / "a"))
    before = pipeline.run(conn, [path], settings=settings, principal=CLI_PRINCIPAL, county=county, dry_run=True)
    assert before.report.has_errors                      # 层 and 字段X say nothing the assistant trusts

    with conn.cursor() as cur:
        v1 = county_mapping.save(cur, county, county_mapping.parse_options(["层=floors_above"], None),
                                 principal=CLI_PRINCIPAL)
        v2 = county_mapping.save(cur, county, county_mapping.parse_options(
            ["层=floors_above", "字段X=structure_type"], ["structure_type:砖木=TM"]), principal=CLI_PRINCIPAL,
            note="confirmed")
    conn.commit()
    assert (v1, v2) == (1, 2)
    with conn.cursor() as cur:
        listed = county_mapping.listing(cur, county)
        cur.execute("SELECT action, target FROM cim.audit_log WHERE county_code = %s ORDER BY id", (county,))
        audit = cur.fetchall()
    assert [m["version"] for m in listed] == [2, 1] and listed[0]["note"] == "confirmed"
    assert audit == [("ingest.mapping.save", f"county_mapping:{county}:v1"),
                     ("ingest.mapping.save", f"county_mapping:{county}:v2")]

    nxt = _buildings(tmp_path / "next", frame.assign(编号=[f"C{k}" for k in range(n)]))
    after = pipeline.run(conn, [nxt], settings=settings, principal=CLI_PRINCIPAL, county=county, dry_run=True)
    assert not after.report.has_errors
    (b,) = after.report.delivery.batches
    rows = _rows(b)
    assert rows["层"]["how"] == "user" and f"{county} v2" in rows["层"]["reason"]
    assert rows["字段X"]["target"] == "structure_type" and set(b.frame["structure_type"]) == {"TM"}
    # another county's delivery is not touched by it
    other = pipeline.run(conn, [nxt], settings=settings, principal=CLI_PRINCIPAL, county=county_code(), dry_run=True)
    assert other.report.has_errors


def test_cli_map_options_and_profiles_save_from_a_job(cli, conn, tmp_path):
    county = county_code()
    n = 10
    frame = pd.DataFrame({"编号": [f"B{k}" for k in range(n)], "层": [4] * n, "字段X": ["砖木"] * n})
    path = _buildings(tmp_path / "cli", frame)
    res = cli("ingest", str(path), "--county", county, "--dry-run", "--report", str(tmp_path / "r.json"),
              "--map", "层=floors_above", "--map", "字段X=structure_type", "--map-value", "structure_type:砖木=TM")
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    rows = {m["source_field"]: m for m in data["summary"]["layers"][0]["mapping"]}
    assert rows["层"]["how"] == "user" and rows["字段X"]["target"] == "structure_type"
    assert cli("ingest", str(path), "--map", "bad", "--county", county, "--dry-run").returncode == 2

    # a job's mapping saved as the county's: the job row points at its report
    job_id = "ab" * 16
    work = tmp_path / "job"
    work.mkdir()
    (work / "report.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with conn.cursor() as cur:
        cur.execute("INSERT INTO cim.ingest_job (id, county_code, files, work_dir, submitted_by, state) "
                    "VALUES (%s, %s, %s, %s, 'test', 'awaiting_confirmation')", (job_id, county, ["a.zip"], str(work)))
    conn.commit()
    assert cli("ingest", "profiles", "save", "--county", "999999", "--from-job", job_id).returncode == 2
    res = cli("ingest", "profiles", "save", "--county", county, "--from-job", job_id, check=True)
    assert f"{county} v1" in res.stdout
    listed = json.loads(cli("ingest", "profiles", "--json", "--county", county, check=True).stdout)
    (saved,) = listed["county_mappings"]
    assert saved["source_job"] == job_id and saved["mapping"]["fields"] == {"层": "floors_above",
                                                                              "字段X": "structure_type"}
    assert f"{county} v1" in cli("ingest", "profiles", check=True).stdout
    # the next delivery of the county needs no options
    res = cli("ingest", str(path), "--county", county, "--dry-run", "--report", str(tmp_path / "r2.json"))
    assert res.returncode == 0, res.stderr
    data2 = json.loads((tmp_path / "r2.json").read_text(encoding="utf-8"))
    assert {m["source_field"]: m["how"] for m in data2["summary"]["layers"][0]["mapping"]}["层"] == "user"


def test_boundary_dataset_with_its_own_names_is_proposed_not_refused(tmp_path):
    folder = tmp_path / "boundaries"
    frame = pd.DataFrame({"市名": ["甲市", "乙市", "丙市"], "市代码": ["430100", "430200", "430300"], "面积": [1.0, 2.0, 3.0]})
    write_shapefile(folder, "boundaries", frame,
                    [shapely.box(E0 + i * 1000, N0, E0 + i * 1000 + 900, N0 + 900) for i in range(3)])
    d = read_delivery(zip_folder(folder, tmp_path / "boundaries.zip"), county="430702")
    (b,) = d.batches
    assert b.target == "admin_area" and b.mapping.decided_by == "proposed"
    rows = _rows(b)
    assert (rows["市名"]["target"], rows["市名"]["how"]) == ("name", "proposed")
    assert (rows["市代码"]["target"], rows["市代码"]["how"]) == ("code", "proposed")
    assert list(b.frame["code"]) == ["430100", "430200", "430300"]


def _era_as_text(tmp_path: Path, name: str) -> Path:
    """Buildings whose 建成年代 (a 建造年代 alias) holds free text no dictionary knows and whose 编号
    (a building-code alias) is the community code; 房屋编码 is the building code."""
    n = 12
    frame = pd.DataFrame({"编号": ["430702001001"] * n, "房屋编码": [f"H{k}" for k in range(n)], "地上层数": [3] * n,
                          "结构类型": ["框架"] * n, "建成年代": ["九十年代", "解放前", "不详"] * 4})
    return _buildings(tmp_path / name, frame)


def test_user_unmaps_a_profile_field_and_maps_another_elsewhere(tmp_path):
    path = _era_as_text(tmp_path, "unmap")
    (b,) = read_delivery(path, county="430702").batches
    rows = _rows(b)
    assert (rows["建成年代"]["target"], rows["建成年代"]["how"]) == ("build_era", "alias")
    assert (rows["编号"]["target"], rows["编号"]["how"]) == ("code", "alias")
    assert validate(read_delivery(path, county="430702")).has_errors          # Q22: 九十年代 is no era code

    user = county_mapping.parse_options(["建成年代=", "编号=community_code", "房屋编码=code"], None)
    assert user.fields == {"建成年代": "", "编号": "community_code", "房屋编码": "code"}
    d = read_delivery(path, county="430702", user=user)
    (b,) = d.batches
    rows = _rows(b)
    assert (rows["建成年代"]["target"], rows["建成年代"]["how"]) == (None, "user")   # not proposed again either
    assert "不导入" in rows["建成年代"]["reason"]
    assert (rows["编号"]["target"], rows["编号"]["how"]) == ("community_code", "user")
    assert (rows["房屋编码"]["target"], rows["房屋编码"]["how"]) == ("code", "user")
    assert b.frame["build_era"].isna().all() and list(b.frame["code"]) == [f"H{k}" for k in range(12)]
    assert set(b.frame["community_code"]) == {"430702001001"}
    report = validate(d)
    assert not report.has_errors, [(f.rule_id, f.field, f.value) for f in report.findings][:5]
    # the report keeps the refusal, and so does the mapping saved from it
    saved = county_mapping.from_report(report_dict(report))
    assert saved.fields == {"建成年代": "", "编号": "community_code", "房屋编码": "code"}
    assert county_mapping.check(UserMapping.from_dict({"fields": {"建成年代": None}})).fields == {"建成年代": ""}
    with pytest.raises(InvalidInput):
        county_mapping.parse_options(["=floors_above"], None)


def test_cli_map_to_nothing_and_the_saved_county_mapping(cli, conn, tmp_path):
    county = county_code()
    path = _era_as_text(tmp_path, "cli-unmap")
    assert cli("ingest", str(path), "--county", county, "--dry-run").returncode == 1       # rejected: Q22
    res = cli("ingest", str(path), "--county", county, "--dry-run", "--report", str(tmp_path / "r.json"),
              "--map", "建成年代=", "--map", "编号=community_code", "--map", "房屋编码=code")
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    rows = {m["source_field"]: m for m in data["summary"]["layers"][0]["mapping"]}
    assert (rows["建成年代"]["target"], rows["建成年代"]["how"]) == (None, "user")
    res = cli("ingest", "profiles", "save", "--county", county, "--map", "建成年代=", "--map", "编号=community_code",
              "--map", "房屋编码=code", check=True)
    assert f"{county} v1" in res.stdout
    assert "建成年代→（不导入" in cli("ingest", "profiles", "--county", county, check=True).stdout
    # the county's next delivery is loaded with the field left out, without options
    res = cli("ingest", str(path), "--county", county, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), count(build_era), min(community_code), min(code) FROM cim.building "
                    "WHERE county_code = %s AND is_current", (county,))
        assert cur.fetchone() == (12, 0, "430702001001", "H0")


@pytest.mark.parametrize(("name", "column", "fits"), [
    ("US_NODE", "start_exp_no", True), ("UPSTRUCT", "start_exp_no", True), ("UpstreamID", "start_exp_no", True),
    ("DNSTRUCT", "end_exp_no", True), ("DS_NODE", "start_exp_no", False), ("INVERT_UP", "start_z", True),
    ("UPINVERT", "start_z", True), ("INVERT_DN", "end_z", True), ("DNINVERT", "start_z", False),
    ("SIZE1", "diameter_mm", True), ("RIMELEV", "ground_z", True), ("INVERTELEV", "invert_z", True),
    ("INLETTYPE", "appurtenance", True), ("DSCS", "floors_above", False)])
def test_english_field_names_by_the_meaning_of_their_words(name, column, fits):
    from ingest.mapping.assistant import word_evidence

    score, why = name_evidence(name, column, FieldSpec())
    assert (score >= 0.6) is fits, (name, column, score, why)
    if fits:
        assert word_evidence(name, column)[0] >= 0.8 and name in why
    # a direction never maps onto the opposite end, however close the spelling to its alias
    assert name_evidence("INVERT_DN", "start_z", FieldSpec(aliases=["US_INVERT"])) == (0.0, "")


def test_administrative_levels_in_field_names():
    from ingest.mapping.assistant import hierarchy

    h = hierarchy(["省名", "省代码", "市名", "市代码", "县名", "县代码", "面积"], "admin_area")
    assert (h.level, h.fields, h.parent_code) == ("county", {"name": "县名", "code": "县代码"}, "市代码")
    h = hierarchy(["SHENG_DM", "SHI_MC", "SHI_DM"], "admin_area")
    assert (h.level, h.fields, h.parent_code) == ("city", {"name": "SHI_MC", "code": "SHI_DM"}, "SHENG_DM")
    assert hierarchy(["乡镇名称", "区县代码"], "admin_area").parent_code == "区县代码"
    assert hierarchy(["市名", "市代码"], "building") is None and hierarchy(["名称"], "admin_area") is None

"""Inputs the city model cannot hold, loaded as data with their year.

**Resident population (常住人口)** per admin area: an ``.xlsx`` workbook (first sheet, or a sheet
named 常住人口) or a ``.csv`` file with one header row and the columns

====================  =========================================================  =========
column                header names accepted                                       required
====================  =========================================================  =========
code                  行政区划代码, 区划代码, 代码, 统计用区划代码, code           yes
name                  名称, 行政区名称, 区划名称, name                             no
population            常住人口, 常住人口数, 人口, population (人; a header        yes
                      naming 万人 means ten thousands)
year                  年份, 年度, 统计年度, year                                  unless --year
====================  =========================================================  =========

Codes are the 6-digit county, 9-digit street and 12-digit community codes of the loaded admin
areas. Every row is checked (code form, a whole non-negative number, a year between 1949 and
2100, no code twice for one year); one bad row refuses the whole file, with every problem listed
by row and column in Chinese and English. Codes the admin areas do not have are loaded but
reported.

**Built-up area (建成区)** of a county: a polygon file (GeoJSON, GeoPackage, a shapefile or a
zipped shapefile) with a CRS; all its polygons together are the built-up area of the county for
the year given (``--year``, or a 年份 / year column).

Each upload is kept (immutable); runs read the latest upload for the latest year not after
theirs and record which uploads they used.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2.extensions
import psycopg2.extras

from cim import auth
from cim.crs import STORAGE_SRID
from cim.errors import CrsError, InvalidInput, NotFound, UnreadableInput

POPULATION_SUFFIXES = (".xlsx", ".xlsm", ".csv")
BUILTUP_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".zip")
MAX_PROBLEMS = 50
_HEADERS = {
    "code": ("行政区划代码", "区划代码", "代码", "统计用区划代码", "行政区代码", "code", "area_code"),
    "name": ("名称", "行政区名称", "区划名称", "行政区划名称", "name"),
    "population": ("常住人口", "常住人口数", "人口", "常住人口人", "population"),
    "year": ("年份", "年度", "统计年度", "year"),
}


@dataclass
class Problem:
    """One problem of an input file, located by row (1-based, header = 1) and column."""

    row: int | None
    column: str | None
    zh: str
    en: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"row": self.row, "column": self.column, "message_zh": self.zh, "message_en": self.en}


@dataclass
class Loaded:
    """An input upload written to the database."""

    input_id: int
    kind: str
    rows: int
    years: list[int]
    county: str | None = None
    warnings: list[Problem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"input_id": self.input_id, "kind": self.kind, "rows": self.rows, "years": self.years,
                "county": self.county, "warnings": [w.to_dict() for w in self.warnings]}


def kind_of(path: Path) -> str:
    """``population`` or ``builtup`` from the file suffix."""
    suffix = path.suffix.lower()
    if suffix in POPULATION_SUFFIXES:
        return "population"
    if suffix in BUILTUP_SUFFIXES:
        return "builtup"
    raise InvalidInput(f"无法识别的输入文件类型：{path.name}（常住人口用 .xlsx/.csv，建成区用 .geojson/.gpkg/.shp/.zip）",
                       f"unrecognised input file {path.name} (population: .xlsx/.csv; built-up area: "
                       ".geojson/.gpkg/.shp/.zip)")


def _norm(text: Any) -> str:
    return re.sub(r"[\s_\-（）()/:：]+", "", str(text or "")).casefold()


def _rows(path: Path) -> list[list[Any]]:
    """Cells of the population sheet (header first)."""
    if path.suffix.lower() == ".csv":
        raw = path.read_bytes()
        for enc in ("utf-8-sig", "gb18030"):
            try:
                text = raw.decode(enc)
                break
            except UnicodeDecodeError:
                continue
        else:
            raise UnreadableInput(f"{path.name} 的编码无法识别（应为 UTF-8 或 GBK）",
                                  f"{path.name}: unknown text encoding (expected UTF-8 or GBK)")
        return [row for row in csv.reader(io.StringIO(text))]
    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a broken file
        raise UnreadableInput(f"{path.name} 不是可读取的 Excel 工作簿", f"{path.name} is not a readable Excel workbook",
                              reason=str(exc)[:200]) from exc
    try:
        sheet = wb["常住人口"] if "常住人口" in wb.sheetnames else wb.worksheets[0]
        return [list(r) for r in sheet.iter_rows(values_only=True)]
    finally:
        wb.close()


def read_population(path: Path, year: int | None = None) -> list[dict[str, Any]]:
    """Rows ``{code, name, population, year}`` of a population file; :class:`InvalidInput` listing
    every problem when one row is wrong."""
    rows = [r for r in _rows(path) if any(c not in (None, "") for c in r)]
    if not rows:
        raise InvalidInput(f"{path.name} 是空的", f"{path.name} is empty")
    header = [_norm(c) for c in rows[0]]
    col: dict[str, int] = {}
    scale = 1
    for key, names in _HEADERS.items():
        for i, h in enumerate(header):
            if any(h == _norm(n) or (key == "population" and h.startswith(_norm(n))) for n in names):
                col[key] = i
                if key == "population" and "万" in h:
                    scale = 10_000
                break
    problems: list[Problem] = []
    for key in ("code", "population") + (() if year else ("year",)):
        if key not in col:
            listed = "、".join(_HEADERS[key][:3])
            problems.append(Problem(1, key, f"缺少列“{listed}”", f"column {key} ({', '.join(_HEADERS[key][:3])}) is missing"))
    if problems:
        raise InvalidInput(f"{path.name} 的表头不符合常住人口表格式", f"{path.name}: the header is not a population sheet",
                           problems=[p.to_dict() for p in problems])
    out: list[dict[str, Any]] = []
    seen: dict[tuple[str, int], int] = {}
    for n, r in enumerate(rows[1:], start=2):
        def cell(k: str, r: list[Any] = r) -> Any:
            return r[col[k]] if k in col and col[k] < len(r) else None

        code = _code(cell("code"))
        if code is None:
            problems.append(Problem(n, "code", f"区划代码“{cell('code')}”应为 6、9 或 12 位数字",
                                    f"code {cell('code')!r} must be 6, 9 or 12 digits"))
        pop = _whole(cell("population"), scale)
        if pop is None:
            problems.append(Problem(n, "population", f"常住人口“{cell('population')}”不是非负整数",
                                    f"population {cell('population')!r} is not a whole non-negative number"))
        y = _whole(cell("year"), 1) if "year" in col and cell("year") not in (None, "") else year
        if y is None or not 1949 <= y <= 2100:
            problems.append(Problem(n, "year", f"年份“{cell('year')}”无效（1949–2100）",
                                    f"year {cell('year')!r} is not valid (1949–2100)"))
        if code is not None and y is not None:
            if (code, y) in seen:
                problems.append(Problem(n, "code", f"区划代码 {code} 的 {y} 年人口与第 {seen[(code, y)]} 行重复",
                                        f"code {code} has a {y} population already in row {seen[(code, y)]}"))
            seen[(code, y)] = n
        name = cell("name")
        out.append({"code": code, "name": None if name is None else str(name).strip(), "population": pop, "year": y})
    if problems:
        shown = problems[:MAX_PROBLEMS]
        raise InvalidInput(f"{path.name} 有 {len(problems)} 处错误，未入库", f"{path.name} has {len(problems)} "
                           "problems; nothing was loaded", problems=[p.to_dict() for p in shown])
    return out


def _code(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    return text if text.isdigit() and len(text) in (6, 9, 12) else None


def _whole(value: Any, scale: int) -> int | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = float(str(value).replace(",", "").replace("，", "").strip()) * scale
    except ValueError:
        return None
    if number < 0 or abs(number - round(number)) > 1e-6 or number != number:
        return None
    return int(round(number))


def load_population(conn: psycopg2.extensions.connection, path: Path, *, principal: auth.Principal,
                    year: int | None = None, client_addr: str | None = None,
                    file_name: str | None = None) -> Loaded:
    """Validate a population file and store it (all rows or none); audited."""
    rows = read_population(path, year)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with conn.cursor() as cur:
        cur.execute("SELECT code FROM cim.admin_area WHERE is_current AND code = ANY(%s)", ([r["code"] for r in rows],))
        known = {r[0] for r in cur.fetchall()}
    warnings = [Problem(None, "code", f"区划代码 {r['code']} 不在已入库的行政区划中",
                        f"code {r['code']} is not among the loaded admin areas") for r in rows if r["code"] not in known]
    years = sorted({r["year"] for r in rows})
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO cim.healthcheck_input (kind, years, file_name, sha256, rows, loaded_by) "
                        "VALUES ('population', %s, %s, %s, %s, %s) RETURNING id",
                        (years, file_name or path.name, digest, len(rows), principal.name))
            row = cur.fetchone()
            assert row is not None  # INSERT … RETURNING
            input_id = row[0]
            psycopg2.extras.execute_values(
                cur, "INSERT INTO cim.healthcheck_population (input_id, code, name, year, population) VALUES %s",
                [(input_id, r["code"], r["name"], r["year"], r["population"]) for r in rows])
            auth.audit(cur, principal, "healthcheck.inputs", target=f"healthcheck_input:{input_id}",
                       client_addr=client_addr, detail={"kind": "population", "file": file_name or path.name,
                                                        "sha256": digest, "rows": len(rows), "years": years})
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return Loaded(input_id, "population", len(rows), years, warnings=warnings[:MAX_PROBLEMS])


def read_builtup(path: Path) -> tuple[bytes, list[int], str | None]:
    """The built-up polygons of a file, dissolved, as EPSG:4490 WKB; the years named in the file;
    a name when the file has one."""
    import geopandas as gpd
    import pyogrio
    import shapely

    source = f"/vsizip/{path}" if path.suffix.lower() == ".zip" else str(path)
    try:
        frame = gpd.read_file(source, engine="pyogrio")
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError, ValueError) as exc:
        raise UnreadableInput(f"{path.name} 无法读取为矢量数据", f"{path.name} cannot be read as vector data",
                              reason=str(exc)[:200]) from exc
    if frame.empty:
        raise InvalidInput(f"{path.name} 中没有要素", f"{path.name} has no features")
    if frame.crs is None:
        raise CrsError(f"{path.name} 缺少坐标参考系（.prj 或 crs），无法确定建成区位置",
                       f"{path.name} has no coordinate reference system (.prj or crs)")
    geoms = frame.geometry.to_numpy()
    kinds = set(shapely.get_type_id(geoms[~shapely.is_missing(geoms)]).tolist())
    if not kinds or not kinds <= {3, 6}:
        raise InvalidInput(f"{path.name} 的建成区必须是面要素", f"{path.name}: the built-up area must be polygons")
    frame = frame.to_crs(STORAGE_SRID)
    merged = shapely.union_all(shapely.make_valid(frame.geometry.to_numpy()))
    polys = [g for g in shapely.get_parts(merged) if shapely.get_type_id(g) == 3]
    if not polys:
        raise InvalidInput(f"{path.name} 的建成区面积为零", f"{path.name}: the built-up area is empty")
    years: list[int] = []
    cols = {_norm(c): c for c in frame.columns if c != frame.geometry.name}
    for name in _HEADERS["year"]:
        if _norm(name) in cols:
            years = sorted({int(v) for v in frame[cols[_norm(name)]].dropna() if _whole(v, 1) is not None})
            break
    label = None
    for name in ("名称", "name"):
        if _norm(name) in cols and frame[cols[_norm(name)]].notna().any():
            label = str(frame[cols[_norm(name)]].dropna().iloc[0])
            break
    return shapely.to_wkb(shapely.MultiPolygon(polys)), years, label


def load_builtup(conn: psycopg2.extensions.connection, path: Path, *, principal: auth.Principal,
                 year: int | None = None, county: str | None = None, client_addr: str | None = None,
                 file_name: str | None = None) -> Loaded:
    """Validate a built-up area file and store it for its county and year; audited."""
    wkb, years, label = read_builtup(path)
    if year is None:
        if len(years) != 1:
            raise InvalidInput("请用 --year 指明建成区的年份（文件中没有唯一的年份字段）",
                               "give the year of the built-up area (--year): the file has no single year column value")
        year = years[0]
    if not 1949 <= year <= 2100:
        raise InvalidInput(f"年份 {year} 无效（1949–2100）", f"year {year} is not valid (1949–2100)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        with conn.cursor() as cur:
            county = _county_of(cur, wkb, county)
            cur.execute("INSERT INTO cim.healthcheck_input (kind, years, county_code, file_name, sha256, rows, loaded_by) "
                        "VALUES ('builtup', %s, %s, %s, %s, 1, %s) RETURNING id",
                        ([year], county, file_name or path.name, digest, principal.name))
            row = cur.fetchone()
            assert row is not None  # INSERT … RETURNING
            input_id = row[0]
            cur.execute("INSERT INTO cim.healthcheck_builtup (input_id, county_code, year, name, geom) "
                        "VALUES (%s, %s, %s, %s, ST_Multi(ST_SetSRID(ST_GeomFromWKB(%s), %s)))",
                        (input_id, county, year, label, psycopg2.Binary(wkb), STORAGE_SRID))
            auth.audit(cur, principal, "healthcheck.inputs", target=f"healthcheck_input:{input_id}", county=county,
                       client_addr=client_addr, detail={"kind": "builtup", "file": file_name or path.name,
                                                        "sha256": digest, "year": year})
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return Loaded(input_id, "builtup", 1, [year], county)


def _county_of(cur: psycopg2.extensions.cursor, wkb: bytes, county: str | None) -> str:
    """The county the built-up area lies in: the one named (it must overlap it), else the county
    area overlapping it most."""
    cur.execute(
        "SELECT a.code, ST_Area(ST_Intersection(a.geom, g)) / ST_Area(g) FROM cim.admin_area a, "
        "  (SELECT ST_SetSRID(ST_GeomFromWKB(%s), %s) g) x "
        " WHERE a.is_current AND a.level = 'county' AND a.geom && g AND ST_Intersects(a.geom, g) "
        "   AND (%s::text IS NULL OR a.code = %s) ORDER BY 2 DESC LIMIT 1",
        (psycopg2.Binary(wkb), STORAGE_SRID, county, county))
    row = cur.fetchone()
    if row is None:
        if county:
            raise InvalidInput(f"建成区不在行政区 {county} 内（或该县的行政区划未入库）",
                               f"the built-up area does not overlap county {county} (or its admin areas are not loaded)")
        raise NotFound("建成区不在任何已入库的县级行政区内，请先入库行政区划或用 --county 指明",
                       "the built-up area overlaps no loaded county; load the admin areas first or give --county")
    return str(row[0])


def list_inputs(cur: psycopg2.extensions.cursor, kind: str | None = None) -> list[dict[str, Any]]:
    """Uploads, newest first."""
    cur.execute("SELECT id, kind, years, county_code, file_name, sha256, rows, loaded_by, loaded_at "
                "FROM cim.healthcheck_input WHERE %(k)s::text IS NULL OR kind = %(k)s ORDER BY id DESC", {"k": kind})
    assert cur.description is not None  # set by the SELECT
    names = [c.name for c in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

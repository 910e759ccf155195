"""The rules of the design card, checked on the source.

Imports point downwards only: api → batch → ingest / tiles / cimplus → layers → cim (api may also
import the middle packages directly); ingest, tiles and cimplus never import each other; batch,
the province-wide Dask jobs, is the one package that may combine tiles and cimplus; nothing imports
api; only api imports the web framework. The demo-county generator (``demo``) stands apart: it may
use the core, and nothing imports it. The ingest runs as stages that import forwards only. Routes
are thin: no route module runs SQL, holds a connection or imports a database driver, and no route
body is longer than :data:`ROUTE_MAX_LINES` lines.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cim", "layers", "ingest", "tiles", "cimplus", "batch", "api", "demo")
ALLOWED = {
    "cim": {"cim"},
    "layers": {"cim", "layers"},
    "ingest": {"cim", "layers", "ingest"},
    "tiles": {"cim", "layers", "tiles"},
    "cimplus": {"cim", "layers", "cimplus"},
    "batch": {"cim", "layers", "tiles", "cimplus", "batch"},
    "api": {"cim", "layers", "ingest", "tiles", "cimplus", "batch", "api"},
    "demo": {"cim", "demo"},
}
WEB_FRAMEWORKS = {"fastapi", "starlette", "uvicorn"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_downwards(package):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        own = _imports(path) & set(PACKAGES)
        bad = own - ALLOWED[package]
        if package != "api":
            bad |= _imports(path) & WEB_FRAMEWORKS - ({"uvicorn"} if path.name == "cli.py" else set())
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


# The ingest as stages, in the order a delivery goes through them: a stage imports the ones
# before it, never a later one, and always by plain imports the checks above can see. The
# loader takes mapped batches and knows nothing of reading or mapping; the upload service sits
# beside the pipeline and only the API imports it.
INGEST_STAGES = {
    "shared": ("ingest.model", "ingest.data", "ingest.keys", "ingest.memory"),
    "readers": ("ingest.readers",),
    "mapping": ("ingest.mapping",),
    "validation": ("ingest.validation", "ingest.validate", "ingest.report"),
    "load": ("ingest.load",),
    "pipeline": ("ingest.pipeline", "ingest.threads"),
    "service": ("ingest.service",),
    "cli": ("ingest.cli",),
    "dem": ("ingest.dem",),
}
INGEST_ALLOWED = {
    "shared": {"shared"},
    "readers": {"shared", "readers"},
    "mapping": {"shared", "readers", "mapping"},
    "validation": {"shared", "mapping", "validation"},
    "load": {"shared", "load"},
    "pipeline": {"shared", "readers", "mapping", "validation", "load", "pipeline"},
    "service": {"shared", "mapping", "pipeline", "service"},
    "cli": {"shared", "mapping", "load", "pipeline", "dem", "cli"},
    "dem": {"dem"},
}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _stage(module: str) -> str | None:
    for stage, prefixes in INGEST_STAGES.items():
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return stage
    return None


def _ingest_imports(path: Path) -> set[str]:
    """Full names of the ingest modules a file imports (``from ingest import x`` → ``ingest.x``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" if node.module == "ingest" else node.module
                         for alias in node.names)
    return {m for m in found if m.startswith("ingest.")}


def test_ingest_stages_import_forwards_only():
    offenders = []
    for path in sorted((ROOT / "ingest").rglob("*.py")):
        module = _module(path)
        if module == "ingest":
            continue
        stage = _stage(module)
        if stage is None:
            offenders.append(f"{module} belongs to no ingest stage (add it to INGEST_STAGES)")
            continue
        for imported in sorted(_ingest_imports(path)):
            if _stage(imported) not in INGEST_ALLOWED[stage]:
                offenders.append(f"{module} ({stage}) imports {imported} ({_stage(imported)})")
        if "importlib" in _imports(path):
            offenders.append(f"{module} imports importlib: join the stages by plain imports")
    assert not offenders, "\n".join(offenders)


# What a route may not do itself: run SQL or hold a database connection. Routes parse, make one
# call into a module without HTTP (layers, tiles, ingest, cim) and answer.
_DB_CALLS = {"fetch", "fetchrow", "fetchval", "execute", "executemany", "cursor", "acquire", "connect",
             "copy_records_to_table", "copy_to_table", "copy_from_query"}
_SQL_TEXT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|EXPLAIN|COPY|CREATE|DROP|ALTER|SET)\s")
ROUTERS = sorted((ROOT / "api" / "routers").glob("*.py"))


def _db_work(path: Path) -> list[str]:
    """Lines of a module that call a database method or hold SQL text (docstrings aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _DB_CALLS:
            found.append(f"{path.name}:{node.lineno} calls .{node.func.attr}()")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                and _SQL_TEXT.match(node.value):
            found.append(f"{path.name}:{node.lineno} holds SQL text {node.value[:30]!r}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            names += [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name.split(".")[0] in ("asyncpg", "psycopg2") or name in ("cim.dbcall", "cim.db.connect"):
                    found.append(f"{path.name}:{node.lineno} imports {name}")
    return found


def test_routes_run_no_sql():
    assert ROUTERS and not [p for p in ROUTERS if p.name != "__init__.py" and "router" not in p.read_text()]
    offenders = [line for path in ROUTERS for line in _db_work(path)]
    assert not offenders, "\n".join(offenders)


def test_the_rule_catches_a_route_with_sql(tmp_path):
    """The check itself: a route that runs a statement is found, a docstring that names SQL is not."""
    bad = tmp_path / "bad.py"
    bad.write_text('"""SELECT is only described here."""\nimport asyncpg\n\n'
                   'async def route(request):\n    """Run SELECT 1."""\n'
                   '    async with request.app.state.pool.acquire() as conn:\n'
                   '        return await conn.fetchval("SELECT 1")\n')
    assert [f.split(" ", 1)[1] for f in _db_work(bad)] == [
        "imports asyncpg", "calls .acquire()", "calls .fetchval()", "holds SQL text 'SELECT 1'"]


ROUTE_MAX_LINES = 30  # a route body (parse, one call, answer) fits in this many lines, docstring aside


def test_route_bodies_are_short():
    long = []
    for path in ROUTERS:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not any(
                    isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute)
                    and d.func.attr in ("get", "post", "put", "patch", "delete") for d in node.decorator_list):
                continue
            body = node.body[1:] if isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value,
                                                                                       ast.Constant) else node.body
            lines = body[-1].end_lineno - body[0].lineno + 1
            if lines > ROUTE_MAX_LINES:
                long.append(f"{path.name}:{node.name} has {lines} lines")
    assert not long, "\n".join(long)

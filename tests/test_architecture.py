"""The dependency rules of the design card, checked on the source: imports point downwards only.

api → ingest / tiles / cimplus → layers → cim; ingest, tiles and cimplus never import each other;
nothing imports api; only api imports the web framework. The demo-county generator (``demo``) stands
apart: it may use the core, and nothing imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cim", "layers", "ingest", "tiles", "cimplus", "api", "demo")
ALLOWED = {
    "cim": {"cim"},
    "layers": {"cim", "layers"},
    "ingest": {"cim", "layers", "ingest"},
    "tiles": {"cim", "layers", "tiles"},
    "cimplus": {"cim", "layers", "cimplus"},
    "api": {"cim", "layers", "ingest", "tiles", "cimplus", "api"},
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

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


# The ingest as stages, in the order a delivery goes through them: a stage imports the ones
# before it, never a later one, and always by plain imports the checks above can see. The
# loader takes mapped batches and knows nothing of reading or mapping; the upload service sits
# beside the pipeline and only the API imports it.
INGEST_STAGES = {
    "shared": ("ingest.model", "ingest.data"),
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
    "service": {"shared", "pipeline", "service"},
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

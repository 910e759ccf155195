"""Declared dependencies are the imported ones.

Every third-party module the packages import belongs to a distribution declared in
``[project] dependencies`` (the tests' imports may also come from the ``dev`` extra), and every
declared runtime dependency is imported by the packages, except the few in ``NOT_IMPORTED``,
each with the reason it is declared. Import names are mapped to distributions by the installed
metadata (``importlib.metadata.packages_distributions``), so ``yaml`` is PyYAML and
``psycopg2`` is psycopg2-binary.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cim", "layers", "ingest", "tiles", "cimplus", "api", "batch", "demo")

# Declared runtime dependencies that no module imports by name, and why they are declared.
NOT_IMPORTED = {
    "python-multipart": "Starlette imports it to parse multipart uploads (POST /api/ingest)",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(extra: str | None = None) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = project["optional-dependencies"][extra] if extra else project["dependencies"]
    return {_norm(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in reqs}


def _imported(dirs: tuple[str, ...]) -> dict[str, set[str]]:
    """Top-level third-party module → files importing it (absolute imports only)."""
    first_party = set(PACKAGES) | {"tests", "bench"}
    for d in ("tests", "bench"):  # helper modules imported by their own name (tests/ingest/fixtures.py, bench/ingest/synth.py)
        first_party |= {p.stem for p in (ROOT / d).rglob("*.py")} | {p.name for p in (ROOT / d).rglob("*") if p.is_dir()}
    found: dict[str, set[str]] = {}
    for d in dirs:
        for path in (ROOT / d).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top not in sys.stdlib_module_names and top not in first_party and top != "__future__":
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _distributions(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """Distribution → files importing it; an import no installed distribution provides is an error."""
    by_module = packages_distributions()
    missing = sorted(m for m in modules if m not in by_module)
    assert not missing, f"imported but provided by no installed distribution: {missing}"
    out: dict[str, set[str]] = {}
    for module, files in modules.items():
        for dist in by_module[module]:
            out.setdefault(_norm(dist), set()).update(files)
    return out


def test_every_import_of_the_packages_is_a_declared_dependency():
    used = _distributions(_imported(PACKAGES))
    undeclared = {d: sorted(f)[:3] for d, f in used.items() if d not in _declared()}
    assert not undeclared, f"imported by the packages but not in [project] dependencies: {undeclared}"


def test_every_declared_dependency_is_imported():
    used = set(_distributions(_imported(PACKAGES)))
    unused = sorted(_declared() - used - set(NOT_IMPORTED))
    assert not unused, f"declared in [project] dependencies but imported nowhere: {unused}"
    stale = sorted(set(NOT_IMPORTED) & used)
    assert not stale, f"now imported by the packages: remove from NOT_IMPORTED: {stale}"
    assert set(NOT_IMPORTED) <= _declared(), "NOT_IMPORTED names a dependency that is not declared"


def test_every_import_of_the_tests_is_declared():
    used = _distributions(_imported(("tests",)))
    declared = _declared() | _declared("dev")
    undeclared = {d: sorted(f)[:3] for d, f in used.items() if d not in declared}
    assert not undeclared, f"imported by the tests but not declared (runtime or dev): {undeclared}"

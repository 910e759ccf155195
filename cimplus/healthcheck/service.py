"""The health check as one service: built once from the layer catalogue and the indicator
catalogue, one method per question, no HTTP (the API and the CLI both call it).

Connections are passed in (psycopg2): a run holds one for minutes, a read for milliseconds.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import psycopg2.extensions

from cim import auth, db, tasks
from cim.errors import InvalidInput, PayloadTooLarge
from cim.settings import DatabaseSettings
from cimplus.healthcheck import catalog, features, history, inputs, report, run
from cimplus.healthcheck.catalog import Catalogue
from cimplus.healthcheck.run import Progress
from cimplus.healthcheck.template import problems
from layers.catalog import Catalog

T = TypeVar("T")
TASK_KIND = "healthcheck.run"
MAX_INPUT_MB = 64


def with_connection(settings: DatabaseSettings | str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(conn, *args, **kwargs)`` on a connection of its own, closed afterwards (what ``fn`` did
    not commit is rolled back). For callers without a connection: an API route in a worker thread."""
    conn = db.connect(settings, application_name="cim-healthcheck")
    try:
        return fn(conn, *args, **kwargs)
    finally:
        conn.rollback()
        conn.close()


class HealthCheck:
    """城市体检: the indicator catalogue, runs, their history, reports and the features behind values."""

    def __init__(self, layers: Catalog, catalogue: Catalogue | None = None) -> None:
        self.layers = layers
        self.catalogue = catalogue or catalog.load()

    # --- the catalogue ---
    def indicators(self) -> list[dict[str, Any]]:
        """Every indicator as data (names, level, unit, direction, threshold, source, inputs, params, formula)."""
        return list(self.catalogue.snapshot().values())

    def problems(self) -> list[str]:
        """What in the catalogue does not fit the layer catalogue (empty when all is well)."""
        return problems(self.catalogue, self.layers)

    # --- inputs ---
    def load_input(self, conn: psycopg2.extensions.connection, path: Path, *, principal: auth.Principal,
                   kind: str | None = None, year: int | None = None, county: str | None = None,
                   client_addr: str | None = None, file_name: str | None = None) -> inputs.Loaded:
        """Load a population sheet or a built-up area file (kind from the suffix unless given)."""
        kind = kind or inputs.kind_of(Path(file_name or path.name))
        if kind == "population":
            return inputs.load_population(conn, path, principal=principal, year=year, client_addr=client_addr,
                                          file_name=file_name)
        return inputs.load_builtup(conn, path, principal=principal, year=year, county=county,
                                   client_addr=client_addr, file_name=file_name)

    def receive_input(self, settings: DatabaseSettings | str, stream: IO[bytes], file_name: str | None, *,
                      principal: auth.Principal, kind: str | None = None, year: int | None = None,
                      county: str | None = None, client_addr: str | None = None) -> inputs.Loaded:
        """Copy an uploaded stream (at most ``MAX_INPUT_MB``) to a scratch file and load it."""
        name = Path(file_name or "").name
        if not name:
            raise InvalidInput("上传文件缺少文件名", "the uploaded file has no name")
        inputs.kind_of(Path(name))
        with tempfile.TemporaryDirectory(prefix="cim-hc-input-") as tmp:
            path = Path(tmp) / ("input" + Path(name).suffix.lower())
            size = 0
            with path.open("wb") as out:
                while chunk := stream.read(1 << 20):
                    size += len(chunk)
                    if size > MAX_INPUT_MB << 20:
                        raise PayloadTooLarge(f"输入文件超过 {MAX_INPUT_MB} MB", f"the input file exceeds {MAX_INPUT_MB} MB")
                    out.write(chunk)
            return with_connection(settings, self.load_input, path, principal=principal, kind=kind, year=year,
                                   county=county, client_addr=client_addr, file_name=name)

    def inputs(self, cur: psycopg2.extensions.cursor, kind: str | None = None) -> list[dict[str, Any]]:
        """Input uploads, newest first (dates as ISO text)."""
        return [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
                for r in inputs.list_inputs(cur, kind)]

    # --- runs ---
    def start(self, conn: psycopg2.extensions.connection, *, county: str | None = None, year: int | None = None,
              levels: list[str] | None = None, principal: auth.Principal, task_id: int | None = None,
              client_addr: str | None = None) -> int:
        """Record a run (state running) and return its id."""
        return run.start(conn, self.catalogue, county=county, year=year, levels=levels, principal=principal,
                         task_id=task_id, client_addr=client_addr)

    def compute(self, conn: psycopg2.extensions.connection, run_id: int,
                progress: Progress | None = None) -> dict[str, Any]:
        """Compute a started run; returns its summary."""
        return run.compute(conn, run_id, self.catalogue, self.layers, progress)

    def run(self, conn: psycopg2.extensions.connection, *, county: str | None = None, year: int | None = None,
            levels: list[str] | None = None, principal: auth.Principal,
            progress: Progress | None = None) -> dict[str, Any]:
        """Start and compute a run in this process."""
        run_id = self.start(conn, county=county, year=year, levels=levels, principal=principal)
        return self.compute(conn, run_id, progress)

    def request_run(self, cur: psycopg2.extensions.cursor, request: dict[str, Any], *, principal: auth.Principal,
                    client_addr: str | None = None) -> int:
        """Queue a run as a background task (``healthcheck.run``) in the caller's transaction; audited."""
        task_id = tasks.enqueue(cur, TASK_KIND, request, created_by=principal.name, max_attempts=2)
        auth.audit(cur, principal, "healthcheck.run.request", target=f"task:{task_id}", county=request.get("county"),
                   client_addr=client_addr, detail=request)
        return task_id

    def run_task(self, settings: DatabaseSettings | str, args: dict[str, Any], *, created_by: str,
                 task_id: int | None = None, progress: Progress | None = None) -> dict[str, Any]:
        """The background task: start and compute a run. A task queued because a county's data
        changed (args ``county`` and ``delivery_id``) re-checks that county with the year and
        levels of its latest finished run, and does nothing for a county never checked."""
        county, year, levels = args.get("county"), args.get("year"), args.get("levels")
        if "delivery_id" in args:
            latest = with_connection(settings, lambda conn: _latest_done(conn, county))
            if latest is None:
                return {"skipped": "county never checked / 该区县尚无体检运行", "county": county}
            year, levels = latest
        who = auth.Principal(name=created_by, role=None)

        def go(conn: psycopg2.extensions.connection) -> dict[str, Any]:
            run_id = self.start(conn, county=county, year=year, levels=levels, principal=who, task_id=task_id)
            if progress:
                progress(1, f"run {run_id}")
            summary = self.compute(conn, run_id, progress)
            return {"run_id": run_id, "values": summary["values"], "computed": summary["computed"],
                    "failing": summary["failing"], "elapsed_s": summary["elapsed_s"]}

        return with_connection(settings, go)

    # --- history ---
    def runs(self, cur: psycopg2.extensions.cursor, **filters: Any) -> list[dict[str, Any]]:
        """Runs, newest first (county, year, state, task_id, limit)."""
        return history.list_runs(cur, **filters)

    def get(self, cur: psycopg2.extensions.cursor, run_id: int) -> dict[str, Any]:
        """One run with the definitions and classes it used."""
        return history.get_run(cur, run_id)

    def values(self, cur: psycopg2.extensions.cursor, run_id: int, *, level: str | None = None,
               indicator: str | None = None, area: str | None = None, previous: bool = True) -> dict[str, Any]:
        """A run's values (filtered), each with last year's value when there is an earlier run."""
        got = history.get_run(cur, run_id)
        rows = history.values(cur, run_id, level=level, indicator=indicator, area=area)
        prev_id = history.previous_run(cur, got) if previous else None
        if prev_id is not None:
            before = {(v["indicator"], v["area_code"]): v for v in
                      history.values(cur, prev_id, level=level, indicator=indicator, area=area)}
            for v in rows:
                b = before.get((v["indicator"], v["area_code"]))
                v["previous"] = None if b is None else {"value": b["value"], "pass": b["pass"], "state": b["state"]}
        return {"run": got, "previous_run_id": prev_id, "values": rows}

    def compare(self, cur: psycopg2.extensions.cursor, run_id: int, other_id: int | None = None,
                **filters: Any) -> dict[str, Any]:
        """This run against another (default: the latest earlier year's)."""
        return history.compare(cur, run_id, other_id, **filters)

    def classes(self, cur: psycopg2.extensions.cursor, run_id: int, indicator: str | None = None,
                level: str | None = None) -> dict[str, Any]:
        """The choropleth classes a run stored."""
        return history.classes(cur, run_id, indicator, level)

    def features(self, conn: psycopg2.extensions.connection, run_id: int, indicator: str, area: str, *,
                 limit: int = features.MAX_FEATURES, geometry: bool = True) -> dict[str, Any]:
        """The features behind one value (ids, GeoJSON, CQL2 filter)."""
        return features.features(conn, self.layers, self.catalogue, run_id, indicator, area, limit=limit,
                                 geometry=geometry)

    def report(self, conn: psycopg2.extensions.connection, run_id: int, out: Path) -> Path:
        """Write the report (.xlsx or .html)."""
        return report.write(conn, run_id, out)

    def report_bytes(self, conn: psycopg2.extensions.connection, run_id: int, fmt: str) -> bytes:
        """The report as bytes (``xlsx`` or ``html``)."""
        return report.render(conn, run_id, fmt)


def _latest_done(conn: psycopg2.extensions.connection, county: str | None) -> tuple[int, list[str]] | None:
    """Year and levels of the latest finished run over ``county``, or None."""
    with conn.cursor() as cur:
        rows = history.list_runs(cur, county=county, state="done", limit=1)
    return (int(rows[0]["year"]), list(rows[0]["levels"])) if rows else None

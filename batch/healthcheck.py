"""Health-check runs of every county as Dask tasks, one run per county.

Each task is :meth:`cimplus.healthcheck.service.HealthCheck.run` with ``county`` (what ``cim
healthcheck run --county C`` calls) on a connection of its own: the run, its values and its audit
record are those of the single-process run of that county. The year and the levels are fixed on
the client before any task starts (so every county's run has the same ones).

One run per county, not one run over the province: a run over several counties measures in the
3° Gauss-Krüger zone of their joint centre and draws the choropleth classes from the values of
all of them, so a county's values depend on its neighbours'. A run per county depends on that
county alone, so it can be a task of its own; its figures are those of ``cim healthcheck run
--county C``. A province-wide run stays ``cim healthcheck run`` without
``--county``.

Runs side by side do not conflict: a run reads in one REPEATABLE READ snapshot and writes its
values and closes in a transaction of its own (:mod:`cimplus.healthcheck.run`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batch import counties as county_jobs
from cim import auth, db
from cim.settings import DatabaseSettings
from cimplus.healthcheck import areas
from cimplus.healthcheck import run as hc_run
from cimplus.healthcheck.service import HealthCheck


def run_county(db_settings: DatabaseSettings, hc: HealthCheck, year: int, levels: list[str], who: auth.Principal,
               county: str) -> county_jobs.CountyResult:
    """The Dask task: start and compute the run of one county; its summary or the error."""
    def go() -> dict[str, Any]:
        conn = db.connect(db_settings, application_name="cim-healthcheck")
        try:
            return hc.run(conn, county=county, year=year, levels=levels, principal=who)
        finally:
            conn.close()

    return county_jobs.guarded(county, go)


def plan(db_settings: DatabaseSettings, hc: HealthCheck, wanted: list[str] | None, year: int | None,
         levels: list[str] | None) -> tuple[list[str], int, list[str]]:
    """The counties (``wanted``, each with admin areas, or every county with admin areas), the
    year (default: this year) and the levels (default: the catalogue's), checked before any task."""
    year, levels = hc_run.check_request(year, levels, hc.catalogue)
    county_jobs.check_codes(wanted)
    conn = db.connect(db_settings, application_name="cim-batch")
    try:
        with conn.cursor() as cur:
            if not wanted:
                return areas.counties_in_scope(cur, None), year, levels
            chosen = list(dict.fromkeys(wanted))
            for county in chosen:
                areas.counties_in_scope(cur, county)
            return chosen, year, levels
    finally:
        conn.rollback()
        conn.close()


def run(client: Any, db_settings: DatabaseSettings, hc: HealthCheck, counties: list[str], *, year: int,
        levels: list[str], who: auth.Principal,
        progress: Callable[[int, int], None] | None = None) -> list[county_jobs.CountyResult]:
    """One run per county on the cluster of ``client``; results in county order."""
    url = db.resolve_url(db_settings)
    shipped = db_settings.model_copy(update={"database_url": url})
    shared = client.scatter(hc, broadcast=True)
    return county_jobs.run(client, run_county, counties, shipped, shared, year, levels, who, progress=progress)

"""Fixtures of the hazard-ledger tests: a database of their own, planted counties, the service,
principals of every role and a live server.

- ``hz_url``: a migrated database for these tests only (the ledger's counts never mix with
  other suites');
- ``county``: a fresh county code per test (rows and entries of one test never meet another's);
- ``plant``: :class:`plant.Plant` for that county;
- ``svc``: a :class:`HazardService` on ``hz_url`` with attachments in a temporary directory;
- ``who(role, *codes)``: a principal of a role scoped to codes (the test county by default);
- ``hz_server``: a live uvicorn server on ``hz_url`` (public reads off) and ``token(role, *codes)``.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from types import SimpleNamespace

import psycopg2
import pytest
import testkit

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: sibling helpers

from plant import Plant  # noqa: E402

from cim import auth  # noqa: E402
from cim.auth import Principal, Role  # noqa: E402
from cim.settings import DatabaseSettings, HazardSettings, Settings  # noqa: E402

_counties = itertools.count(1)


@pytest.fixture(scope="session")
def hz_url(make_database) -> str:
    """A migrated database for the hazard tests."""
    return make_database("hz")


@pytest.fixture
def hz_conn(hz_url):
    """A connection to it (rolled back and closed afterwards)."""
    with testkit.connection(hz_url) as c:
        yield c


@pytest.fixture
def county() -> str:
    """A county code of this test alone (43 = Hunan, 9x = unused prefecture codes)."""
    n = next(_counties)
    assert n < 1000, "county codes of the tests run out at 439999"
    return f"43{90 + n // 100}{n % 100:02d}"


@pytest.fixture
def plant(hz_conn, county) -> Plant:
    """Plants facilities of the test's county."""
    return Plant(hz_conn, county)


@pytest.fixture(scope="session")
def settings(hz_url, tmp_path_factory) -> Settings:
    """Settings on the test database, attachments in a temporary directory, small upload limit."""
    home = tmp_path_factory.mktemp("hzsvc")
    return Settings(db=DatabaseSettings(database_url=hz_url, home=home),
                    hazards=HazardSettings(attachments_dir=home / "attachments", attachment_max_mb=1))


@pytest.fixture(scope="session")
def svc(settings):
    """The ledger service (one for the session: its pool is reused)."""
    from cimplus.hazards.service import HazardService

    s = HazardService(settings)
    yield s
    s.close()


@pytest.fixture
def who(county):
    """``who(role, *codes)``: a principal of that role scoped to ``codes`` (default: the test county)."""
    ids = itertools.count(1000)

    def make(role: str, *codes: str) -> Principal:
        return Principal(f"{role}-user", Role(role), token_id=next(ids), counties=frozenset(codes or (county,)))

    return make


@pytest.fixture
def run_scan(svc, county):
    """``run_scan(**kw)``: scan the test county; returns the report."""

    def run(**kw):
        return svc.run_scan(kw.pop("county", county), **kw)

    return run


def entries(conn, county: str, rule: str | None = None) -> list[dict]:
    """The county's ledger entries (oldest first) as dicts."""
    with conn.cursor() as cur:
        cur.execute("SELECT id, number, rule_id, rule_key, status, condition_cleared, evidence, previous_id, version, "
                    "facility_refs, risk_level, hazard_class, title FROM cim.hazard WHERE county_code = %s "
                    "AND (%s::text IS NULL OR rule_id = %s) ORDER BY id", (county, rule, rule))
        cols = [c.name for c in cur.description]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    conn.rollback()
    return rows


@pytest.fixture(scope="session")
def hz_server(make_database, tmp_path_factory):
    """A live server on a database of its own: ``.base`` URL, database ``.url``, ``.home`` (CIM_HOME),
    ``.token(role, *codes)`` → request headers with a new token."""
    from api.app import create_app
    from cim.settings import AuthSettings

    url = make_database("hzhttp")
    home = tmp_path_factory.mktemp("hzhome")
    settings = Settings(db=DatabaseSettings(database_url=url, home=home), auth=AuthSettings(public_read=False),
                        hazards=HazardSettings(attachment_max_mb=1))
    srv = testkit.serve(create_app(settings))
    conn = psycopg2.connect(url)

    def token(role: str, *codes: str) -> dict[str, str]:
        with conn.cursor() as cur:
            tok = auth.create_token(cur, name=f"{role}-{'-'.join(codes) or 'all'}", role=Role(role), counties=list(codes))
        conn.commit()
        return {"Authorization": f"Bearer {tok.secret}"}

    yield SimpleNamespace(base=srv.url, url=url, home=home, token=token)
    conn.close()
    srv.stop(10)

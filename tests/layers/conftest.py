"""Fixtures for the domain modules called without HTTP: the known features of tests/api/seed.sql
in the test database, and a runner that hands a fresh asyncpg pool to a module function."""

from __future__ import annotations

import asyncpg
import pytest

from tests import aio
from tests.api.conftest import delete_seed, seed_known


@pytest.fixture(scope="package")
def seeded(db_url) -> dict:
    """Known features (test county 990001); returns {code or exp_no or pole_no: id}."""
    yield seed_known(db_url)
    delete_seed(db_url)


@pytest.fixture
def on_pool(db_url):
    """``on_pool(fn, *args, **kw)``: ``await fn(pool, *args, **kw)`` on a pool of the test database."""

    def call(fn, *args, **kw):
        async def go():
            pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
            try:
                return await fn(pool, *args, **kw)
            finally:
                await pool.close()

        return aio.run(go())

    return call

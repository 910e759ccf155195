"""Fixtures of the batch tests: one Dask LocalCluster of 2 processes for the package."""

from __future__ import annotations

import pytest

from batch import engine


@pytest.fixture(scope="package")
def client():
    """A client on a LocalCluster of 2 worker processes (its scheduler stands in for a real one)."""
    with engine.dask_client(None, 2) as c:
        yield c

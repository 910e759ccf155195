"""Builders of small in-memory deliveries for the loader, CLI-free (shared by the load tests), and
their load through the loader's one path."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from cim import auth
from ingest.load import LoadResult, commit, open_load
from ingest.model import Delivery, LayerBatch, Report

LON0, LAT0 = 111.69, 29.04


def county_code() -> str:
    """A county code no other test uses (keeps tests independent in the shared test database)."""
    return f"4{random.randint(10000, 99999)}"


def points(n: int, network: str = "JS", prefix: str | None = None, dx: float = 0.0) -> LayerBatch:
    """``n`` pipeline points in a row along the parallel through the demo town."""
    prefix = prefix or network
    xs = LON0 + dx + np.arange(n) * 1e-4
    frame = pd.DataFrame({
        "exp_no": [f"{prefix}{i}" for i in range(n)],
        "ground_z": np.linspace(50.0, 45.0, n),
        "feature": ["直线点"] * n,
        "geom": shapely.points(xs, np.full(n, LAT0)),
    })
    return LayerBatch("pipe_point", f"{network}POINT", "test", frame, source_crs="EPSG:4546", encoding="gbk",
                      network=network)


def segments(n_points: int, network: str = "JS", prefix: str | None = None, dx: float = 0.0) -> LayerBatch:
    """Segments joining consecutive points of :func:`points`."""
    prefix = prefix or network
    n = n_points - 1
    xs = LON0 + dx + np.arange(n_points) * 1e-4
    coords = np.stack([np.column_stack([xs[:-1], np.full(n, LAT0)]), np.column_stack([xs[1:], np.full(n, LAT0)])], 1)
    frame = pd.DataFrame({
        "start_exp_no": [f"{prefix}{i}" for i in range(n)],
        "end_exp_no": [f"{prefix}{i + 1}" for i in range(n)],
        "diameter_mm": np.full(n, 300.0),
        "material": ["PE"] * n,
        "flow_dir": pd.array([1] * n, dtype="Int64"),
        "geom": shapely.linestrings(coords),
    })
    return LayerBatch("pipe_segment", f"{network}LINE", "test", frame, network=network)


def buildings(n: int, floors: int = 3) -> LayerBatch:
    """``n`` square buildings (plain Polygons: the loader stores them as MultiPolygons)."""
    xs = LON0 + np.arange(n) * 2e-4
    frame = pd.DataFrame({
        "name": [f"楼{i}" for i in range(n)],
        "floors_above": pd.array([floors] * n, dtype="Int64"),
        "height_m": np.full(n, floors * 3.0),
        "geom": shapely.box(xs, LAT0 + 1e-3, xs + 1e-4, LAT0 + 1.1e-3),
    })
    return LayerBatch("building", "房屋", "test", frame)


def delivery(tmp: Path, batches: list[LayerBatch], county: str, name: str = "delivery.zip",
             content: bytes | None = None) -> Report:
    """A report without findings for a delivery whose original file is written under ``tmp``."""
    path = tmp / name
    path.write_bytes(content if content is not None else random.randbytes(64))
    data = path.read_bytes()
    d = Delivery(path=path, file_name=name, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
                 county_code=county, batches=batches)
    return Report(d)


def snapshot(conn) -> dict:
    """Row counts per feature table (current and all), delivery and audit rows, data versions."""
    out: dict = {}
    with conn.cursor() as cur:
        for t in ("admin_area", "building", "pipe_point", "pipe_segment", "green_space", "streetlight"):
            cur.execute(f"SELECT count(*), count(*) FILTER (WHERE is_current) FROM cim.{t}")
            out[t] = cur.fetchone()
        cur.execute("SELECT count(*), coalesce(max(id), 0) FROM cim.delivery")
        out["delivery"] = cur.fetchone()
        cur.execute("SELECT id, state FROM cim.delivery ORDER BY id")
        out["delivery_states"] = cur.fetchall()
        cur.execute("SELECT source_table, version FROM cim.data_version ORDER BY 1")
        out["versions"] = cur.fetchall()
    conn.rollback()
    return out


def load(conn, report: Report, *, principal: auth.Principal, archive_dir: Path | None = None) -> LoadResult:
    """Load a delivery the way the pipeline's loader thread does: open → write → finish → commit
    (the commit refuses a report with errors and rolls everything back)."""
    opened = open_load(conn, report.delivery, principal=principal, archive_dir=archive_dir)
    if isinstance(opened, LoadResult):            # the same file again: nothing written
        return opened
    for batch in report.delivery.batches:
        opened.write(batch)
    return commit(opened.finish(report.delivery), report)

"""DEM storage and sampling: rasterio validation, bilingual errors, copy + registration + audit."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

from cim import raster
from cim.auth import CLI_PRINCIPAL
from cim.errors import CrsError, UnreadableInput
from ingest.dem import store_dem
from tiles3d.conftest import write_dem


def test_sample_bilinear_and_nearest(tmp_path):
    path = write_dem(tmp_path / "d.tif")
    # the slope rises 10 m over 200 columns: at a pixel centre both methods agree exactly
    lon = 111.440 + 0.0002 * 100.5
    lat = 27.245 - 0.0002 * 150.5
    near = raster.sample_dem(path, [lon], [lat], method="nearest")
    bil = raster.sample_dem(path, [lon], [lat])
    assert near[0] == pytest.approx(bil[0], abs=1e-4)
    assert 55.0 < bil[0] < 55.1
    # half-way between two columns bilinear interpolates, nearest does not
    mid = raster.sample_dem(path, [lon + 0.0001], [lat])[0]
    assert mid == pytest.approx(bil[0] + 10 / 199 / 2, abs=1e-3)
    out = raster.sample_dem(path, [100.0, 111.4401], [20.0, 27.2449], method="nearest")
    assert np.isnan(out).all()          # outside the raster, and the nodata pixel at (0, 0)


def test_store_projected_dem_and_sample_through_the_database(t3d_conn, tmp_path):
    # a DEM in CGCS2000 / 3-degree Gauss-Kruger CM 111E (EPSG:4546), 20 m pixels
    to_gk = Transformer.from_crs(4490, 4546, always_xy=True)
    x0, y0 = to_gk.transform(111.44, 27.245)
    path = tmp_path / "gk.tif"
    z = np.full((100, 100), 80.0, "float32")
    with rasterio.open(path, "w", driver="GTiff", width=100, height=100, count=1, dtype="float32",
                       crs="EPSG:4546", transform=from_origin(x0, y0, 20, 20)) as dst:
        dst.write(z, 1)
    home = tmp_path / "home"
    row = store_dem(t3d_conn, path, principal=CLI_PRINCIPAL, home=home)
    try:
        assert row["srid"] == 4546 and (home / "dem" / f"{row['sha256']}.tif").is_file()
        w, s, e, n = row["bounds"]
        assert abs(w - 111.44) < 0.001 and abs(n - 27.245) < 0.001
        assert raster.sample_dem(t3d_conn, [111.45], [27.24])[0] == pytest.approx(80.0)
        with t3d_conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM cim.dem WHERE is_current")
            assert cur.fetchone()[0] == 1
            cur.execute("SELECT action, target, detail->>'sha256' FROM cim.audit_log ORDER BY id DESC LIMIT 1")
            action, target, sha = cur.fetchone()
            assert action == "dem.store" and target == f"dem/{row['id']}" and sha == row["sha256"]
    finally:
        with t3d_conn.cursor() as cur:   # put the seeded DEM back as current
            cur.execute("DELETE FROM cim.dem WHERE id = %s", (row["id"],))
            cur.execute("UPDATE cim.dem SET is_current = true WHERE id = (SELECT max(id) FROM cim.dem)")
        t3d_conn.commit()


def test_rejects_non_rasters_and_missing_crs(t3d_conn, tmp_path):
    bad = tmp_path / "not.tif"
    bad.write_text("this is not a GeoTIFF")
    with pytest.raises(UnreadableInput) as exc:
        store_dem(t3d_conn, bad, principal=CLI_PRINCIPAL, home=tmp_path)
    assert exc.value.zh and "GeoTIFF" in exc.value.en
    with pytest.raises(UnreadableInput):
        store_dem(t3d_conn, tmp_path / "x.asc", principal=CLI_PRINCIPAL, home=tmp_path)
    nocrs = tmp_path / "nocrs.tif"
    with rasterio.open(nocrs, "w", driver="GTiff", width=4, height=4, count=1, dtype="float32") as dst:
        dst.write(np.zeros((4, 4), "float32"), 1)
    with pytest.raises(CrsError) as exc:
        store_dem(t3d_conn, nocrs, principal=CLI_PRINCIPAL, home=tmp_path)
    assert "CRS" in exc.value.en and exc.value.zh
    assert not (tmp_path / "dem").exists() or not any((tmp_path / "dem").iterdir())   # nothing copied
    t3d_conn.rollback()

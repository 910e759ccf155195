"""The COPY formatting of ingest.load.rows: hex EWKB built in numpy, Arrow CSV read back by PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import shapely

from ingest import keys
from ingest.load import rows

GEOMETRIES = [
    "POINT (111.69 29.04)",
    "LINESTRING (111.69 29.04, 111.7 29.05, 111.71 29.04)",
    "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0), (2 2, 3 2, 3 3, 2 2))",
    "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5), (5.2 5.1, 5.3 5.1, 5.3 5.2, 5.2 5.1)))",
    "MULTILINESTRING ((0 0, 1 1), (2 2, 3 3, 4 2))",
    "LINESTRING Z (111.69 29.04 12.5, 111.7 29.05 13)",
]


def test_ewkb_hex_equals_shapely_with_srid():
    geoms = shapely.from_wkt(np.array(GEOMETRIES * 50))
    mine = rows.ewkb_hex(geoms, 4490).to_pylist()
    ref = shapely.to_wkb(shapely.set_srid(geoms, 4490), hex=True, include_srid=True, output_dimension=2)
    assert mine == list(ref)
    assert mine[0].startswith("0101000020" + "8A110000")  # point, SRID flag, SRID 4490 little-endian
    assert rows.ewkb_hex(geoms[:0], 4490).to_pylist() == []


def test_csv_round_trip_through_copy(conn):
    """Empty strings stay empty, missing values become NULL, quotes, commas, newlines and Chinese
    survive, NUL characters are dropped, numbers and booleans keep their values."""
    frame = pd.DataFrame({
        "t": ["", None, 'a "quoted", comma', "两行\n文字", "nul\x00here", "普通"],
        "f": [1.5, np.nan, 0.1, -2.0, 1e-7, float("inf")],
        "i": pd.array([1, None, 3, -4, 5, 32767], dtype="Int64"),
        "b": [True, False, None, True, False, None],
        "g": pd.arrays.ArrowExtensionArray(rows.ewkb_hex(shapely.points(np.arange(6.0), np.arange(6.0)), 4490)),
    })
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE csv_probe (t text, f double precision, i smallint, b boolean, "
                    "g geometry(Point, 4490))")
        cur.copy_expert("COPY csv_probe (t, f, i, b, g) FROM STDIN WITH (FORMAT csv)", rows._csv(frame))
        cur.execute("SELECT t, f, i, b, ST_X(g) FROM csv_probe")
        got = cur.fetchall()
    assert [r[0] for r in got] == ["", None, 'a "quoted", comma', "两行\n文字", "nulhere", "普通"]
    assert got[0][1] == 1.5 and got[1][1] is None and got[2][1] == 0.1 and got[4][1] == 1e-7
    assert got[5][1] == float("inf")
    assert [r[2] for r in got] == [1, None, 3, -4, 5, 32767]
    assert [r[3] for r in got] == [True, False, None, True, False, None]
    assert [r[4] for r in got] == pytest.approx([0, 1, 2, 3, 4, 5])


def test_mixed_text_column_is_written_as_text(conn):
    """A text column holding numbers and strings (an XLSX code column) goes in as text."""
    frame = pd.DataFrame({"t": pd.Series(["A1", 7, None, 2.5], dtype=object)})
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE mixed_probe (t text)")
        cur.copy_expert("COPY mixed_probe (t) FROM STDIN WITH (FORMAT csv)", rows._csv(frame))
        cur.execute("SELECT t FROM mixed_probe")
        assert [r[0] for r in cur.fetchall()] == ["A1", "7", None, "2.5"]


def test_point_lookup_with_missing_numbers_matches_nothing():
    """A segment end without a point number (or network) resolves to no point, never to a point that
    lacks one too, and the lookup does not fail on the missing values (pandas' text columns keep
    them missing through ``astype(str)``)."""
    lookup = pd.DataFrame({"network": ["YS", "YS", None, "YS", "YS"],
                           "exp_no": ["Y1", None, "Y2", "Y3", "Y1"],
                           "id": [11, 12, 13, 14, 15]})
    index = keys.PointIndex(lookup)
    network = np.array(["YS", "YS", "YS", None, "YS", "WS"], dtype=object)
    exp_no = pd.array(["Y1", None, "Y3", "Y2", pd.NA, "Y1"], dtype="string").to_numpy(dtype=object)
    assert index.ids(network, exp_no).tolist() == [11, -1, 14, -1, -1, -1]
    assert keys.PointIndex(lookup.iloc[:0]).ids(network, exp_no).tolist() == [-1] * 6


def _index_in_ids(lookup: pd.DataFrame, network, exp_no) -> list[int]:
    """The reference answer: Arrow's exact ``index_in`` over the whole lookup per call."""
    known = keys.text_keys(keys.arrow_text(lookup["network"]), keys.arrow_text(lookup["exp_no"]))
    pos = pc.fill_null(pc.index_in(keys.text_keys(keys.arrow_text(network), keys.arrow_text(exp_no)),
                                   value_set=known, skip_nulls=True), -1).to_numpy(zero_copy_only=False)
    ids = lookup["id"].to_numpy()
    return [int(ids[p]) if p >= 0 else -1 for p in pos]


@pytest.mark.parametrize("collide", [False, True])
def test_point_lookup_matches_exact_lookup(monkeypatch, collide):
    """The hashed lookup answers exactly what an exact lookup answers — repeated keys (first row
    wins), missing values, texts of every length, non-ASCII point numbers, by point number alone
    when the lookup has no network — also when every key hashes alike (each candidate then fails the key comparison and the exact path answers)."""
    if collide:
        monkeypatch.setattr(keys, "text_hashes", lambda values: np.zeros(len(values), dtype=np.uint64))
    rng = np.random.default_rng(7)
    n = 3000
    nets = np.array(["YS", "WS", "RQ", None], dtype=object)
    numbers = np.array([f"{p}{i}" for i in range(400) for p in ("Y", "雨", "")] + [None], dtype=object)
    lookup = pd.DataFrame({"network": nets[rng.integers(0, 4, n)], "exp_no": numbers[rng.integers(0, len(numbers), n)],
                           "id": np.arange(100, 100 + n)})
    network = nets[rng.integers(0, 4, 5000)]
    exp_no = numbers[rng.integers(0, len(numbers), 5000)]
    index = keys.PointIndex(lookup)
    assert index.ids(network, exp_no).tolist() == _index_in_ids(lookup, network, exp_no)
    assert index.ids(network[:0], exp_no[:0]).tolist() == []
    by_number = keys.PointIndex(pa.table({"exp_no": keys.arrow_text(lookup["exp_no"]), "id": lookup["id"].to_numpy()}))
    pos = pc.fill_null(pc.index_in(keys.arrow_text(exp_no), value_set=keys.arrow_text(lookup["exp_no"]),
                                   skip_nulls=True), -1).to_numpy(zero_copy_only=False)
    assert by_number.ids(None, exp_no).tolist() == [int(lookup["id"].iloc[p]) if p >= 0 else -1 for p in pos]


def test_text_hashes_of_sliced_and_chunked_text():
    """A text's hash does not depend on where it sits in its array (slices, offsets, chunks)."""
    texts = ["", "Y1", "雨水井1", None, "Y1", "x" * 300] * 30000
    whole = keys.text_hashes(pa.array(texts))
    assert whole[1] == whole[4] and whole[0] != whole[1] and len(set(whole[[0, 1, 2, 5]].tolist())) == 4
    assert (keys.text_hashes(pa.array(texts).slice(5, 100_000)) == whole[5:100_005]).all()
    assert (keys.text_hashes(pa.chunked_array([texts[:7], texts[7:]]).combine_chunks()) == whole).all()


def test_lines_from_points_by_key_then_by_number_alone():
    """Lines of a line table without geometry come from the points its ends name: by network and
    point number, else by the number alone (a line table mapped to another network than its
    point table), with the source coordinates alongside; an end no point has stays without a line."""
    from ingest.mapping.lines import _EndPoints
    from ingest.model import Delivery, LayerBatch

    xy = np.array([[112.0, 28.0], [112.001, 28.0], [112.002, 28.001]])
    src = np.array([[500.0, 3100.0], [600.0, 3100.0], [700.0, 3200.0]])
    pts = LayerBatch("pipe_point", "PSPOINT", "test",
                     pd.DataFrame({"exp_no": ["A", "B", "C"], "network": ["PS"] * 3, "geom": shapely.points(xy)}),
                     source_crs="EPSG:4546", network="PS", source_geom=shapely.points(src), source_unit_m=1.0)
    segs = LayerBatch("pipe_segment", "LINE", "test",
                      pd.DataFrame({"start_exp_no": ["A", "B", "C"], "end_exp_no": ["B", "C", "X"],
                                    "network": ["PS", "JS", "PS"], "geom": [None] * 3}))
    ends = _EndPoints(Delivery(path=None, file_name="t", sha256="0", size_bytes=0, county_code=None, batches=[pts]))
    assert ends.by_no is None                      # no miss yet
    ends.connect(segs)
    g = segs.frame["geom"].to_numpy()
    assert shapely.equals(g[0], shapely.linestrings(xy[:2])) and shapely.equals(g[1], shapely.linestrings(xy[1:]))
    assert g[2] is None and ends.by_no is not None
    assert shapely.equals(segs.source_geom[1], shapely.linestrings(src[1:])) and segs.source_crs == "EPSG:4546"

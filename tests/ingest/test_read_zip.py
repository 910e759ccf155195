"""Zip defences: path traversal, absolute paths, symlinks, zip bombs, empty and fake zips,
type sniffing. Nothing is written outside the work directory."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import write_network_shapefiles, zip_bomb, zip_entries, zip_folder, zip_with_symlink  # noqa: E402

from cim.errors import UnreadableInput  # noqa: E402
from cim.settings import IngestSettings  # noqa: E402
from ingest.pipeline import read_delivery  # noqa: E402
from ingest.readers.archive import extract_zip, sniff  # noqa: E402


@pytest.mark.parametrize("name", ["../evil.shp", "a/../../evil.shp", "/etc/evil.shp", "C:/evil.shp",
                                  "..\\evil.shp"])
def test_path_traversal_and_absolute_names(tmp_path, name):
    z = zip_entries(tmp_path / "t.zip", {"ok.csv": b"a,b\n1,2\n", name: b"x"})
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(UnreadableInput) as exc:
        extract_zip(z, work, IngestSettings())
    assert "path" in exc.value.en
    assert not any(work.rglob("*"))                # refused before anything was written
    assert not (tmp_path / "evil.shp").exists()


def test_symlink_member(tmp_path):
    z = zip_with_symlink(tmp_path / "s.zip")
    with pytest.raises(UnreadableInput) as exc:
        read_delivery(z)
    assert "symbolic link" in exc.value.en


def test_zip_bomb_ratio_and_total(tmp_path):
    z = zip_bomb(tmp_path / "bomb.zip", megabytes=64)
    assert z.stat().st_size < 1 << 20
    with pytest.raises(UnreadableInput) as exc:
        read_delivery(z)
    assert "zip bomb" in exc.value.en
    with pytest.raises(UnreadableInput) as exc:
        extract_zip(z, tmp_path, IngestSettings(max_unzipped_mb=16, max_zip_ratio=1e9))
    assert "limit" in exc.value.en


def test_empty_zip_and_fake_zip(tmp_path):
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w"):
        pass
    with pytest.raises(UnreadableInput) as exc:
        read_delivery(empty)
    assert "empty" in exc.value.en
    fake = tmp_path / "fake.zip"
    fake.write_text("this is a text file with a zip name")
    with pytest.raises(UnreadableInput) as exc:
        read_delivery(fake)
    assert exc.value.zh and "zip" in exc.value.en


def test_extension_must_match_content(tmp_path):
    p = tmp_path / "points.gpkg"
    p.write_text("not sqlite")
    with pytest.raises(UnreadableInput) as exc:
        read_delivery(p)
    assert "does not match" in exc.value.en
    assert sniff(p) == "text"


def test_nested_folder_inside_zip(tmp_path):
    write_network_shapefiles(tmp_path / "d")
    z = zip_folder(tmp_path / "d", tmp_path / "n.zip", arc_prefix="成果/管线/")
    d = read_delivery(z, county="430702")
    assert sorted(b.source_layer for b in d.batches) == ["YSLINE", "YSPOINT"]


def test_zip_inside_zip(tmp_path):
    write_network_shapefiles(tmp_path / "d")
    inner = zip_folder(tmp_path / "d", tmp_path / "inner.zip")
    outer = tmp_path / "outer.zip"
    with zipfile.ZipFile(outer, "w") as zf:
        zf.write(inner, "管线/inner.zip")
    d = read_delivery(outer, county="430702")
    assert sorted(b.source_layer for b in d.batches) == ["YSLINE", "YSPOINT"]


def test_nested_zips_share_one_size_budget(tmp_path):
    a = zip_bomb(tmp_path / "a.zip", megabytes=12)
    outer = tmp_path / "outer.zip"
    with zipfile.ZipFile(outer, "w") as zf:
        zf.write(a, "one.zip")
        zf.write(a, "two.zip")
    settings = IngestSettings(max_unzipped_mb=20, max_zip_ratio=1e9)
    work = tmp_path / "w"
    work.mkdir()
    with pytest.raises(UnreadableInput) as exc:      # 12 MB + 12 MB > 20 MB across the nesting
        extract_zip(outer, work, settings)
    assert "limit" in exc.value.en


def test_zips_inside_a_folder_are_expanded(tmp_path):
    write_network_shapefiles(tmp_path / "d")
    folder = tmp_path / "upload"
    folder.mkdir()
    zip_folder(tmp_path / "d", folder / "管线.zip")
    (folder / "readme.txt").write_text("说明\n\"未闭合的引号, 不是表格\n")
    (folder / "metadata.json").write_text('{"项目": "管线普查"}')
    d = read_delivery(folder, county="430702")
    assert sorted(b.source_layer for b in d.batches) == ["YSLINE", "YSPOINT"]
    assert any(n.topic == "file" and "metadata.json" in n.message_en for n in d.notes)


@pytest.mark.parametrize("target", [".dbf", ".shp", ".shx"])
def test_corrupted_bytes_give_a_domain_error_or_data(tmp_path, target):
    """Random byte damage never escapes as a crash: the reader returns data or a CimError."""
    import random

    from cim.errors import CimError
    from ingest.validate import validate
    rng = random.Random(7)
    p, _ = write_network_shapefiles(tmp_path / "orig")
    clean = {ext: p.with_suffix(ext).read_bytes() for ext in (".shp", ".shx", ".dbf", ".prj")}
    for i in range(12):
        folder = tmp_path / f"c{i}"
        folder.mkdir()
        for ext, data in clean.items():
            blob = bytearray(data)
            if ext == target:
                for _ in range(6):
                    blob[rng.randrange(len(blob))] = rng.randrange(256)
            (folder / f"YSPOINT{ext}").write_bytes(bytes(blob))
        try:
            validate(read_delivery(folder, county="430702"))
        except CimError as exc:
            assert exc.zh and exc.en


def test_encrypted_or_unsupported_members(tmp_path):
    z = zip_entries(tmp_path / "e.zip", {"YSPOINT.csv": b"a,b\n1,2\n"})
    blob = bytearray(z.read_bytes())
    blob[6] |= 0x01                                   # local header: "encrypted" flag
    cd = blob.rfind(b"PK\x01\x02")
    blob[cd + 8] |= 0x01                              # central directory: same flag
    z.write_bytes(bytes(blob))
    with pytest.raises(UnreadableInput) as exc:
        read_delivery(z)
    assert "encrypted" in exc.value.en


def test_members_extracted_in_reading_order_on_a_worker(tmp_path):
    """Pipe points come before pipe segments (ingest.mapping.layer.Mapper.reading_rank); the worker
    thread is joined when the extraction is left, and the files are all there."""
    import threading

    from ingest.readers.archive import Extraction

    write_network_shapefiles(tmp_path / "d")
    z = zip_folder(tmp_path / "d", tmp_path / "n.zip")
    rank = {"YSPOINT": 0, "YSLINE": 1}
    work = tmp_path / "w"
    work.mkdir()
    with Extraction(z, work, IngestSettings(), lambda p: rank.get(p.stem, 2)) as ex:
        ex.wait(ex.files)
        names = [f.stem for f in ex.files]
        assert names.index("YSPOINT") < names.index("YSLINE")
        assert all(f.exists() for f in ex.files)
    assert not any(t.name == "cim-unzip" for t in threading.enumerate())
    d = read_delivery(z, county="430702")
    assert [b.source_layer for b in d.batches] == ["YSPOINT", "YSLINE"]


def test_a_corrupt_member_read_last_still_refuses_the_delivery(tmp_path):
    """A member that fails to extract while earlier files are being read is reported as
    unreadable input, not lost in the worker thread."""
    import random

    write_network_shapefiles(tmp_path / "d")
    z = zip_folder(tmp_path / "d", tmp_path / "n.zip")
    with zipfile.ZipFile(z, "a") as zf:
        zf.writestr("zz_notes.txt", random.Random(3).randbytes(20000), compress_type=zipfile.ZIP_DEFLATED)
    blob = bytearray(z.read_bytes())
    name = blob.find(b"zz_notes.txt")                 # local header of the last member
    data = name + len("zz_notes.txt")
    for i in range(data + 400, data + 440):           # damage its compressed bytes
        blob[i] ^= 0xFF
    z.write_bytes(bytes(blob))
    with pytest.raises(UnreadableInput) as exc:
        read_delivery(z, county="430702")
    assert "zz_notes.txt" in exc.value.en


def test_an_unreadable_first_file_stops_the_extraction_cleanly(tmp_path):
    """The reader fails on the first file while the worker is still extracting the rest: the
    error is the reader's, the worker is joined, the scratch folder is gone."""
    import random
    import tempfile
    import threading

    p, _ = write_network_shapefiles(tmp_path / "d")
    shp = p.with_suffix(".shp")
    shp.write_bytes(shp.read_bytes()[:150])                 # truncated .shp, read first (a point table)
    z = zip_folder(tmp_path / "d", tmp_path / "t.zip")
    with zipfile.ZipFile(z, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zz_big.bin", random.Random(9).randbytes(8 << 20))
    scratch = set(Path(tempfile.gettempdir()).glob("cim-ingest-*"))
    with pytest.raises(UnreadableInput) as exc:
        read_delivery(z, county="430702")
    assert "YSPOINT" in exc.value.en
    assert not any(t.name == "cim-unzip" for t in threading.enumerate())
    assert set(Path(tempfile.gettempdir()).glob("cim-ingest-*")) == scratch

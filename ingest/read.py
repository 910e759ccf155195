"""Read a delivery (zip, folder or loose files) into :class:`~ingest.model.Delivery` batches.

``read_delivery(path)`` sniffs and safely expands the input, reads every layer (shapefile sets,
GeoPackage, GeoJSON, CSV, XLSX, DBF tables), decides encodings and CRSs, detects the profile
and target of each layer, maps the columns, transforms geometries to EPSG:4490 and builds
pipe segments from the point tables when a line table has no geometry.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from pyproj.exceptions import ProjError
from shapely.errors import GEOSException

from cim.errors import CimError, UnreadableInput
from cim.schema import FEATURE_TABLES, rank
from cim.settings import IngestSettings
from ingest.crsdetect import load_datum_shifts, longitude_for_county, resolve
from ingest.geometry import fit_geometry_type, metric_geometry, prepare_geometry, table_coordinates
from ingest.model import Delivery, LayerBatch, Note
from ingest.normalize import convert_columns, derive, load_dictionaries
from ingest.profile import Match, detect, load_profiles, name_targets
from ingest.readers import SourceLayer
from ingest.readers.archive import Extraction, sniff
from ingest.readers.table import read_csv, read_xlsx
from ingest.readers.vector import library_message, read_dbf, read_geojson, read_gpkg, read_shapefile

READABLE = {".shp", ".dbf", ".gpkg", ".geojson", ".json", ".csv", ".txt", ".xlsx", ".xlsm", ".zip"}
LENIENT = {".txt", ".json"}     # in a folder or zip, unreadable files of these types are skipped
COMPANIONS = {".shx", ".prj", ".cpg", ".sbn", ".sbx", ".qix", ".xml", ".qmd", ".qpj", ".fix", ".atx", ".ain",
              ".aih", ".ixs", ".mxs", ".lock"}


def _digest(paths: Sequence[Path]) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    for p in paths:
        with p.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
    return h.hexdigest(), size


def _files_of(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path]


def _expected_type(ext: str) -> set[str]:
    return {".shp": {"shp"}, ".dbf": {"dbf"}, ".gpkg": {"gpkg"}, ".geojson": {"json"}, ".json": {"json"},
            ".csv": {"text"}, ".txt": {"text"}, ".xlsx": {"xlsx"}, ".xlsm": {"xlsx"}, ".zip": {"zip"}}.get(ext, set())


def _read_file(p: Path, rel: str) -> list[SourceLayer]:
    ext = p.suffix.lower()
    if p.stat().st_size == 0:
        raise UnreadableInput(f"文件 {rel} 为空", f"file {rel} is empty", file=rel)
    kind = sniff(p)
    if kind not in _expected_type(ext):
        raise UnreadableInput(f"文件 {rel} 的内容与扩展名 {ext} 不符", f"the content of {rel} does not match "
                              f"its extension {ext}", file=rel, detected=kind)
    if ext == ".shp":
        return [read_shapefile(p, rel)]
    if ext == ".dbf":
        if p.with_suffix(".shp").exists() or p.with_suffix(".SHP").exists():
            return []
        return [read_dbf(p, rel)]
    if ext == ".gpkg":
        return read_gpkg(p, rel)
    if ext in (".geojson", ".json"):
        return [read_geojson(p, rel)]
    if ext in (".csv", ".txt"):
        return [read_csv(p, rel)]
    return read_xlsx(p, rel)


def _orphans(files: list[Path], root: Path) -> list[str]:
    """Companion files (.shx, .prj …) without their .shp."""
    stems = {(p.parent, p.stem.lower()) for p in files if p.suffix.lower() == ".shp"}
    return [str(p.relative_to(root)) for p in files if p.suffix.lower() in (".shx", ".prj", ".cpg")
            and (p.parent, p.stem.lower()) not in stems]


def _guarded(fn, what: str, *args):
    """Run a reader step; data that trips a library error is unreadable input (4xx), not a crash."""
    try:
        return fn(*args)
    except CimError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, UnicodeError, GEOSException,
            ProjError, struct.error) as exc:
        why = library_message(exc, Path(what))
        raise UnreadableInput(f"无法读取 {what}：文件内容不完整或格式不符（{type(exc).__name__}）",
                              f"cannot read {what}: {type(exc).__name__}: {why}", file=what) from exc


def _is_zip(path: Path) -> bool:
    ext = path.suffix.lower()
    return path.is_file() and (ext == ".zip" or (ext not in (".xlsx", ".xlsm") and sniff(path) == "zip"))


def _expand(path: Path, n: int, settings: IngestSettings, work: Path,
            rank: Callable[[Path], int] | None = None) -> tuple[Path, list[Path], Extraction | None]:
    """The root folder and the files of one input: a folder's files, a zip's members (being
    extracted under ``work`` in ``rank`` order), or the file itself."""
    if not path.exists():
        raise UnreadableInput(f"文件不存在：{path}", f"no such file: {path}")
    if path.is_file() and path.suffix.lower() in (".shx", ".prj", ".cpg"):
        raise UnreadableInput(f"{path.name} 不能单独交付，请提交 .shp 及其配套文件",
                              f"{path.name} cannot be delivered alone; deliver the .shp and its companions")
    if _is_zip(path):
        root = work / f"z{n}"
        root.mkdir()
        extraction = Extraction(path, root, settings, rank)
        return root, extraction.files, extraction
    return (path, _files_of(path), None) if path.is_dir() else (path.parent, [path], None)


def iter_sources(paths: Sequence[Path], settings: IngestSettings, work: Path, notes: list[Note],
                 rank: Callable[[Path], int] | None = None) -> Iterator[SourceLayer]:
    """The layers of the given files, folders and zips, each as soon as it is read; notes about
    skipped files are appended to ``notes``. ``rank`` orders the files of each folder or zip
    (stable: equal ranks keep their name order)."""
    queue = list(paths)
    n = 0
    while queue:
        path = queue.pop(0)
        root, files, extraction = _expand(path, n, settings, work, rank)
        n += 1
        with extraction or contextlib.nullcontext():
            yield from _read_files(path, root, files, extraction, notes, rank, queue)


def _read_files(path: Path, root: Path, files: list[Path], extraction: Extraction | None, notes: list[Note],
                rank: Callable[[Path], int] | None, queue: list[Path]) -> Iterator[SourceLayer]:
    for orphan in _orphans(files, root):
        notes.append(Note(orphan, "file", f"{orphan} 没有对应的 .shp，已忽略",
                          f"{orphan} has no matching .shp and was ignored"))
    for p in sorted(files, key=rank) if rank else files:
        ext = p.suffix.lower()
        rel = str(p.relative_to(root)) if p.is_relative_to(root) else p.name
        if ext in COMPANIONS:
            continue
        if ext == ".zip" and path.is_dir():
            queue.append(p)
            continue
        if ext not in READABLE or ext == ".zip":
            notes.append(Note(rel, "file", f"未识别的文件类型，已忽略：{rel}", f"unrecognised file type, ignored: {rel}"))
            continue
        if extraction is not None:   # the file and its companions (same folder and name)
            extraction.wait([f for f in files if f.parent == p.parent and f.stem.lower() == p.stem.lower()])
        try:
            layers = _guarded(_read_file, rel, p, rel)
        except UnreadableInput as exc:
            if ext not in LENIENT or len(files) == 1:
                raise
            # side files (readme.txt, metadata.json) must not sink a delivery
            notes.append(Note(rel, "file", f"{rel} 无法作为数据读取，已忽略：{exc.zh}",
                              f"{rel} cannot be read as data and was ignored: {exc.en}"))
            continue
        yield from layers
    if extraction is not None:
        extraction.wait([])          # members no reader asked for must have extracted cleanly too


def read_deliveries(paths: Sequence[Path | str], *, profile: str | None = None, county: str | None = None,
                    conn=None, settings: IngestSettings | None = None,
                    profile_dirs: Sequence[Path | str] = (), on_start: Callable[[Delivery], None] | None = None,
                    on_batch: Callable[[LayerBatch], None] | None = None) -> Delivery:
    """Read several files or folders as one delivery (e.g. a point workbook and a line workbook).

    ``on_start(delivery)`` is called once the files are hashed, before any layer is read;
    ``on_batch(batch)`` with every finished batch, as soon as it is ready: a loader can write
    one layer while the next is read. Pipe segments whose lines are built from the point
    tables come last, once every layer is read. A batch handed over is not changed afterwards.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise UnreadableInput("未提供交付文件", "no delivery file given")
    settings = settings or IngestSettings()
    for p in paths:
        if not p.exists():
            raise UnreadableInput(f"文件不存在：{p}", f"no such file: {p}")
    sha, size = _digest([f for p in paths for f in _files_of(p)])
    delivery = Delivery(path=paths[0], file_name=", ".join(p.name for p in paths), sha256=sha, size_bytes=size,
                        county_code=county)
    if on_start:
        on_start(delivery)
    profiles = load_profiles(profile_dirs)
    dicts = load_dictionaries(conn)
    county_lon = longitude_for_county(county, conn)
    shifts = load_datum_shifts(str(settings.datum_shifts) if settings.datum_shifts else None)
    handed: set[int] = set()
    read_any = False
    # the sources close (joining a zip's extraction thread) before the folder they extract into goes
    with (tempfile.TemporaryDirectory(prefix="cim-ingest-") as tmp,
          contextlib.closing(iter_sources(paths, settings, Path(tmp), delivery.notes, _load_rank(profiles))) as sources):
        for layer in sources:
            read_any = True
            for topic, zh, en in layer.notes:
                delivery.notes.append(Note(layer.name, topic, zh, en))
            match = detect(layer.name, list(layer.frame.columns), layer.geometry_kind, profiles, profile=profile)
            if match is None:
                delivery.notes.append(Note(layer.name, "profile", f"图层 {layer.file} 无法匹配任何交付规范，未导入",
                                           f"layer {layer.file} matches no delivery profile and was not read"))
                continue
            delivery.notes.append(Note(layer.name, "profile", f"图层 {layer.file} → 规范 {match.profile.id} / "
                                       f"{match.spec.id} → 表 {match.spec.target}",
                                       f"layer {layer.file} → profile {match.profile.id} / {match.spec.id} → "
                                       f"table {match.spec.target}"))
            batch = _guarded(_to_batch, layer.file, layer, match, dicts, county_lon, delivery, shifts)
            delivery.batches.append(batch)
            if on_batch and not _needs_point_lines(batch):
                _fill_length(batch)
                handed.add(id(batch))
                on_batch(batch)
    if not read_any:
        raise UnreadableInput("交付中没有可读取的图层或表格", "the delivery holds no readable layer or table")
    if not delivery.batches:
        raise UnreadableInput("交付中没有图层能匹配已知的交付规范；请指定 --profile 或添加规范文件",
                              "no layer of the delivery matches a known profile; pass a profile or add a profile file")
    build_lines_from_points(delivery)
    for b in delivery.batches:
        _fill_length(b)
    if delivery.county_code is None:
        _county_from_admin_areas(delivery)
    if on_batch:
        for b in delivery.batches:
            if id(b) not in handed:
                on_batch(b)
    return delivery


def _load_rank(profiles) -> Callable[[Path], int]:
    """Reading order by the target a file name suggests (:data:`cim.schema.FEATURE_TABLES`: pipe
    points before pipe segments, which a loader writes once every point is in); names that
    suggest nothing go last, with the segments."""
    last = len(FEATURE_TABLES) - 1

    def key(path: Path) -> int:
        return min((min(rank(t), last) for t in name_targets(path.stem, profiles)), default=last)
    return key


def _needs_point_lines(batch: LayerBatch) -> bool:
    """A pipe-segment table without geometry: its lines come from the point tables."""
    return batch.target == "pipe_segment" and len(batch) > 0 and bool(batch.frame["geom"].isna().all())


def _county_from_admin_areas(delivery: Delivery) -> None:
    """Take the county code from a delivered county boundary when exactly one is present."""
    codes = set()
    for b in delivery.batches:
        if b.target == "admin_area":
            codes |= set(b.frame.loc[b.frame["level"] == "county", "code"].dropna())
    if len(codes) == 1:
        delivery.county_code = codes.pop()
        delivery.notes.append(Note("", "county", f"未指定县级行政区代码，按交付的县界取 {delivery.county_code}",
                                   f"no county code given; {delivery.county_code} taken from the delivered county "
                                   "boundary"))


def read_delivery(path: Path | str, *, profile: str | None = None, county: str | None = None, conn=None,
                  settings: IngestSettings | None = None, profile_dirs: Sequence[Path | str] = ()) -> Delivery:
    """Read one delivered file or folder: .zip, folder, .shp, .gpkg, .geojson/.json, .csv, .xlsx, .dbf.

    Raises :class:`cim.errors.UnreadableInput` or :class:`cim.errors.CrsError` (bilingual).
    """
    return read_deliveries([path], profile=profile, county=county, conn=conn, settings=settings,
                           profile_dirs=profile_dirs)


OUTLIER_SPAN = {"degrees": 2.0, "metres": 200_000.0}   # farther than this from the median: an outlier


def _feature_xy(layer: SourceLayer, match: Match) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Bounding boxes (minx, miny, maxx, maxy) of each feature in source coordinates."""
    if layer.geom is not None:
        return shapely.bounds(layer.geom).T
    if match.spec.coords is not None:
        e, n = table_coordinates(layer.frame, match)
        return np.stack([e, n, e, n])
    return None


def _outliers(b: np.ndarray) -> np.ndarray:
    """Features whose coordinates lie far from the layer's median (a stray 0 or a typo in one
    row must not decide the CRS of the whole layer). Needs five or more located features."""
    ok = np.isfinite(b).all(axis=0)
    out = np.zeros(b.shape[1], dtype=bool)
    if ok.sum() < 5:
        return out
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    mx, my = np.median(cx[ok]), np.median(cy[ok])
    degrees = abs(mx) <= 180 and abs(my) <= 90
    span = OUTLIER_SPAN["degrees" if degrees else "metres"]
    with np.errstate(invalid="ignore"):
        out[ok] = (np.abs(cx[ok] - mx) > span) | (np.abs(cy[ok] - my) > span)
    return out


def _to_batch(layer: SourceLayer, match: Match, dicts, county_lon, delivery: Delivery,
              shifts=None) -> LayerBatch:
    frame, raw = convert_columns(layer.frame, match, dicts, clean_text=layer.clean_text)
    net, sub = derive(frame, match, dicts)
    resolved = None
    b = _feature_xy(layer, match)
    outliers = _outliers(b) if b is not None else np.zeros(len(frame), dtype=bool)
    if b is not None:
        keep = np.isfinite(b).all(axis=0) & ~outliers
        if keep.any():
            xs = np.concatenate([b[0, keep], b[2, keep]])
            ys = np.concatenate([b[1, keep], b[3, keep]])
            resolved = resolve(layer.crs, xs, ys, layer=layer.name, county_lon=county_lon,
                               county=delivery.county_code, shifts=shifts)
            for topic, zh, en in resolved.notes:
                delivery.notes.append(Note(layer.name, topic, zh, en))
    src, geom = prepare_geometry(layer, match, resolved, frame)
    repaired = np.zeros(len(frame), dtype=bool)
    if geom is not None:
        if outliers.any():                   # reported by rule G04, never stored
            geom[outliers] = None
            src[outliers] = None
        geom, repaired = fit_geometry_type(geom, match.spec.target)
    frame["geom"] = geom if geom is not None else np.full(len(frame), None, dtype=object)
    if match.spec.target == "pipe_segment":
        net = net if frame["network"].nunique() <= 1 else None
    return LayerBatch(
        target=match.spec.target, source_layer=layer.name, profile_id=match.profile.id, frame=frame,
        source_crs=resolved.label if resolved else None, encoding=layer.encoding,
        network=net or (frame["network"].dropna().iloc[0] if "network" in frame and frame["network"].nunique() == 1
                        else None),
        subtype=sub, raw=raw, field_map=dict(match.columns), source_geom=src,
        source_unit_m=(None if resolved is None or resolved.is_geographic else resolved.unit_factor()),
        repaired=repaired, file=layer.file, spec_id=match.spec.id, outliers=outliers if outliers.any() else None)


def build_lines_from_points(delivery: Delivery) -> None:
    """Give pipe segments without geometry a line from their start and end points (vectorised).

    Points are looked up by (network, 物探点号) among the delivery's point batches; segments
    whose points are missing keep an empty geometry (rules Q05 and G02 report them).
    """
    todo = [b for b in delivery.batches if _needs_point_lines(b)]
    points = [b for b in delivery.batches if b.target == "pipe_point" and len(b)]
    if not todo or not points:
        return
    pts = pd.concat([pd.DataFrame({"network": b.frame["network"].to_numpy(), "exp_no": b.frame["exp_no"].to_numpy(),
                                   "geom": b.frame["geom"].to_numpy(),
                                   "src": b.source_geom if b.source_geom is not None else np.full(len(b), None),
                                   "crs": b.source_crs}) for b in points], ignore_index=True)
    pts = pts[pts["exp_no"].notna() & pts["geom"].notna()].drop_duplicates(["network", "exp_no"])
    if pts.empty:          # no usable point: the lines stay without geometry (G02, Q05 report it)
        return
    by_key = pd.MultiIndex.from_arrays([pts["network"].astype(object), pts["exp_no"].astype(object)])
    by_no = pd.Index(pts.drop_duplicates("exp_no")["exp_no"].astype(object))
    first = pts.drop_duplicates("exp_no")
    crs_set = set(pts["crs"].dropna())
    for b in todo:
        ends = []
        for col in ("start_exp_no", "end_exp_no"):
            key = pd.MultiIndex.from_arrays([b.frame["network"].astype(object), b.frame[col].astype(object)])
            idx = by_key.get_indexer(key)
            alt = by_no.get_indexer(b.frame[col].astype(object))
            ends.append((idx, alt))
        geoms, srcs = [], []
        for which in ("geom", "src"):
            xy = []
            for idx, alt in ends:
                g = np.where(idx >= 0, pts[which].to_numpy()[np.maximum(idx, 0)],
                             np.where(alt >= 0, first[which].to_numpy()[np.maximum(alt, 0)], None))
                g[(idx < 0) & (alt < 0)] = None
                xy.append(_xy(g))
            ok = np.isfinite(xy[0]).all(axis=1) & np.isfinite(xy[1]).all(axis=1)
            lines = np.full(len(b), None, dtype=object)
            if ok.any():
                lines[ok] = shapely.linestrings(np.stack([xy[0][ok], xy[1][ok]], axis=1))
            (geoms if which == "geom" else srcs).append(lines)
        b.frame["geom"] = geoms[0]
        b.geometry_built = True
        if len(crs_set) == 1:
            b.source_geom = srcs[0]
            b.source_crs = next(iter(crs_set))
            src_batch = points[0]
            b.source_unit_m = src_batch.source_unit_m
        delivery.notes.append(Note(b.source_layer, "geometry", f"图层 {b.source_layer} 的管线由起止点号连接点表生成",
                                   f"layer {b.source_layer}: lines built from the point table by start/end point numbers"))


def _xy(g: np.ndarray) -> np.ndarray:
    """Nx2 coordinates of an array of points (NaN where missing)."""
    out = np.full((len(g), 2), np.nan)
    ok = ~shapely.is_missing(g)
    if ok.any():
        out[ok, 0] = shapely.get_x(g[ok])
        out[ok, 1] = shapely.get_y(g[ok])
    return out


def _fill_length(b: LayerBatch) -> None:
    """Compute pipe-segment lengths (m, 3D when both end elevations are known) when not delivered."""
    if b.target != "pipe_segment" or not len(b):
        return
    missing = b.frame["length_m"].isna().to_numpy()
    if not missing.any():
        return
    metric = metric_geometry(b)
    plan = shapely.length(metric)
    dz = (b.frame["end_z"] - b.frame["start_z"]).to_numpy(dtype=float)
    length = np.where(np.isfinite(dz), np.sqrt(plan ** 2 + np.nan_to_num(dz) ** 2), plan)
    b.frame.loc[missing, "length_m"] = np.round(length[missing], 3)

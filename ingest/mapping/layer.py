"""One source layer onto its target table: profile, columns and codes, CRS, geometry → LayerBatch.

:class:`Mapper` holds what mapping needs once per delivery (the profiles, the code
dictionaries, the county's longitude, the datum shifts). :meth:`Mapper.map_layer` turns each
:class:`~ingest.readers.SourceLayer` into a :class:`~ingest.model.LayerBatch` as soon as it is
read, with its :class:`~ingest.model.LayerMapping`; :meth:`Mapper.complete` does what needs
every layer (pipe segments from the point tables, their lengths, the county from a delivered
county boundary). Every decision the report must state is appended to the delivery's notes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import shapely

from cim.errors import UnreadableInput
from cim.schema import FEATURE_TABLES, rank
from cim.settings import IngestSettings
from ingest.mapping.assistant import assist, propose_layer, samples_of
from ingest.mapping.assistant import settings as assistant_settings
from ingest.mapping.crsdetect import ResolvedCrs, load_datum_shifts, longitude_for_county, resolve
from ingest.mapping.geometry import fit_geometry_type, prepare_geometry, table_coordinates
from ingest.mapping.lines import fill_length, lines_from_points, needs_point_lines
from ingest.mapping.normalize import convert_columns, derive, load_dictionaries
from ingest.mapping.profile import Match, detect, geometry_fits, load_profiles, name_targets
from ingest.model import Delivery, LayerBatch, LayerMapping, Note, UserMapping
from ingest.readers import SourceLayer
from ingest.readers.errors import guarded, guarded_items

OUTLIER_SPAN = {"degrees": 2.0, "metres": 200_000.0}   # farther than this from the median: an outlier


class Mapper:
    """Maps the layers of one delivery (``profile``: a profile id to use instead of detecting one).

    ``conn`` (optional) gives the dictionaries and the county boundary from the database, else
    the seed file and ``ingest/county_lon.yaml`` are used. ``user``: mappings the user gave or
    the county saved (they win over the profile's rules and the assistant's proposals). A named
    profile is tried first, never a reason to refuse a layer the others or the assistant can map.
    """

    def __init__(self, *, profile: str | None = None, county: str | None = None, conn=None,
                 settings: IngestSettings | None = None, profile_dirs: Sequence[Path | str] = (),
                 user: UserMapping | None = None) -> None:
        settings = settings or IngestSettings()
        self.profile, self.county, self.user = profile, county, user
        self.profiles = load_profiles(profile_dirs)
        self.dicts = load_dictionaries(conn)
        self.county_lon = longitude_for_county(county, conn)
        self.shifts = load_datum_shifts(str(settings.datum_shifts) if settings.datum_shifts else None)
        self._decided: dict[int, tuple[Match, ResolvedCrs | None, tuple[float, float] | None]] = {}

    def reading_rank(self) -> Callable[[Path], int]:
        """Reading order by the target a file name suggests (:data:`cim.schema.FEATURE_TABLES`: pipe
        points before pipe segments, which a loader writes once every point is in); names that
        suggest nothing go last, with the segments."""
        last = len(FEATURE_TABLES) - 1
        profiles = self.profiles

        def key(path: Path) -> int:
            return min((min(rank(t), last) for t in name_targets(path.stem, profiles)), default=last)
        return key

    def map_layer(self, layer: SourceLayer, notes: list[Note]) -> LayerBatch | None:
        """The layer's batch, or None (noted) when it matches no profile."""
        for topic, zh, en in layer.notes:
            notes.append(Note(layer.name, topic, zh, en))
        match = self._match(layer, notes)
        if match is None:
            notes.append(Note(layer.name, "profile", f"图层 {layer.file} 无法匹配任何交付规范，也没有可信的映射建议，未导入"
                              "（可用 --map 指定字段）",
                              f"layer {layer.file} matches no delivery profile and the assistant has no confident "
                              "proposal; it was not read (map its fields with --map)"))
            return None
        match = assist(match, layer.frame, self.dicts, self.user.for_layer(layer.name) if self.user else None)
        how = "映射助手建议" if match.reason else "规范"
        notes.append(Note(layer.name, "profile", f"图层 {layer.file} → 规范 {match.profile.id} / "
                          f"{match.spec.id} → 表 {match.spec.target}（{how}{'：' + match.reason if match.reason else ''}）",
                          f"layer {layer.file} → profile {match.profile.id} / {match.spec.id} → "
                          f"table {match.spec.target}" + (" (proposed by the mapping assistant)" if match.reason else "")))
        proposed = [f for f in match.fields if f.rule == "proposed"]
        if proposed:
            notes.append(Note(layer.name, "mapping", f"{len(proposed)} 个字段按映射建议对应（"
                              + "、".join(f"{f.source}→{f.column}" for f in proposed) + "），请在映射表中确认",
                              f"{len(proposed)} fields mapped as proposed ("
                              + ", ".join(f"{f.source}→{f.column}" for f in proposed) + "); confirm in the mapping table"))
        batch = guarded(self._to_batch, layer.file, layer, match, notes)
        if layer.rest is not None:
            batch.chunk = 0
        return batch

    def map_rest(self, layer: SourceLayer, first: LayerBatch) -> Iterator[LayerBatch]:
        """The batches of the later chunks of a layer read in chunks, mapped as its first chunk
        ``first`` was: the same profile layer and fields, CRS and reference point for outliers."""
        if layer.rest is None:
            return iter(())
        decided = self._decided.pop(id(first), None)
        assert decided is not None   # map_layer mapped the first chunk
        return self._rest(layer.rest, layer.file, decided, first.mapping)

    def _rest(self, rest: Callable[[], Iterator[SourceLayer]], file: str, decided: tuple,
              mapping: LayerMapping | None) -> Iterator[LayerBatch]:
        """:meth:`map_rest`'s chunks; neither the first chunk nor the one handed over last is
        held while the next is read."""
        match, resolved, centre = decided
        for k, chunk in enumerate(guarded_items(rest(), file), start=1):   # reading a chunk may fail too
            batch = guarded(self._to_batch, chunk.file, chunk, match, [], (resolved, centre))
            del chunk
            batch.chunk = k
            batch.mapping = mapping
            yield batch
            del batch

    def _match(self, layer: SourceLayer, notes: list[Note]) -> Match | None:
        """The profile layer for a source layer: the profile's rules (the named profile first, then
        every profile), else the assistant's proposal; a pipeline layer whose network the rules
        leave open takes it from the layer name (``YS_LIN``)."""
        cols, kind = list(layer.frame.columns), layer.geometry_kind
        match = detect(layer.name, cols, kind, self.profiles, profile=self.profile)
        if match is None and self.profile is not None:
            match = detect(layer.name, cols, kind, self.profiles)
            if match is not None:
                notes.append(Note(layer.name, "profile", f"图层 {layer.file} 不符合指定规范 {self.profile}，"
                                  f"按规范 {match.profile.id} 识别", f"layer {layer.file} does not fit the named "
                                  f"profile {self.profile}; read with profile {match.profile.id}"))
        if match is None or (match.spec.target in ("pipe_point", "pipe_segment") and not match.name_groups
                             and not match.spec.network and not {"network", "subtype"} & set(match.columns)):
            proposed = propose_layer(layer.name, layer.frame, kind, self.profiles, self.dicts, fits=geometry_fits,
                                     prefer=self.profile)
            if proposed is not None and (match is None or proposed.name_groups):
                match = proposed
        return match

    @staticmethod
    def complete_alone(batch: LayerBatch) -> bool:
        """The batch needs no other layer (its lengths are filled here): it can be loaded now."""
        if needs_point_lines(batch):
            return False
        fill_length(batch)
        return True

    def complete(self, delivery: Delivery, held: Iterable[LayerBatch]) -> Iterator[LayerBatch]:
        """What needs every layer: the county from a delivered boundary when none was given, and
        the ``held`` batches (those not :meth:`complete_alone`) with lines of pipe segments from
        the point tables and their lengths, yielded one at a time as each is done. Refuses a
        delivery of which no layer matched a profile."""
        if not delivery.batches:
            raise UnreadableInput("交付中没有图层能匹配已知的交付规范，映射助手也没有可信的建议；请用 --map 指定字段、"
                                  "指定 --profile 或添加规范文件",
                                  "no layer of the delivery matches a known profile and the mapping assistant has no "
                                  "confident proposal; map fields with --map, pass a profile or add a profile file")
        if delivery.county_code is None:
            _county_from_admin_areas(delivery)
        return self._completed(delivery, held)

    @staticmethod
    def _completed(delivery: Delivery, held: Iterable[LayerBatch]) -> Iterator[LayerBatch]:
        for b in lines_from_points(delivery, held):
            fill_length(b)
            yield b

    def _to_batch(self, layer: SourceLayer, match: Match, notes: list[Note],
                  fixed: tuple[ResolvedCrs | None, tuple[float, float] | None] | None = None) -> LayerBatch:
        """The batch of one layer (or chunk); ``fixed``: the CRS and the outliers' reference point
        decided on the layer's first chunk (else decided here, and kept for :meth:`map_rest`)."""
        frame, raw = convert_columns(layer.frame, match, self.dicts, clean_text=layer.clean_text)
        if layer.offset:
            frame["source_row"] = np.arange(layer.offset + 1, layer.offset + len(frame) + 1, dtype=np.int64)
        net, sub = derive(frame, match, self.dicts)
        resolved = fixed[0] if fixed else None
        b = _feature_xy(layer, match)
        centre = fixed[1] if fixed else (_centre(b) if b is not None else None)
        outliers = _outliers(b, centre) if b is not None else np.zeros(len(frame), dtype=bool)
        if b is not None and fixed is None:
            keep = np.isfinite(b).all(axis=0) & ~outliers
            if keep.any():
                xs = np.concatenate([b[0, keep], b[2, keep]])
                ys = np.concatenate([b[1, keep], b[3, keep]])
                resolved = resolve(layer.crs, xs, ys, layer=layer.name, county_lon=self.county_lon,
                                   county=self.county, shifts=self.shifts)
                for topic, zh, en in resolved.notes:
                    notes.append(Note(layer.name, topic, zh, en))
                _note_feet(layer.name, resolved, match, notes)
        src, geom = prepare_geometry(layer, match, resolved, frame)
        repaired = np.zeros(len(frame), dtype=bool)
        if geom is not None:
            assert src is not None  # prepare_geometry returns both or neither
            if outliers.any():                   # reported by rule G04, never stored
                geom[outliers] = None
                src[outliers] = None
            geom, repaired = fit_geometry_type(geom, match.spec.target)
        frame["geom"] = geom if geom is not None else np.full(len(frame), None, dtype=object)
        if match.spec.target == "pipe_segment":
            net = net if frame["network"].nunique() <= 1 else None
        mapping = match.mapping(layer.name, list(layer.frame.columns),
                                samples_of(layer.frame) if fixed is None else ())
        batch = LayerBatch(
            target=match.spec.target, source_layer=layer.name, profile_id=match.profile.id, frame=frame,
            source_crs=resolved.label if resolved else None, encoding=layer.encoding,
            network=net or (frame["network"].dropna().iloc[0] if "network" in frame and frame["network"].nunique() == 1
                            else None),
            subtype=sub, raw=raw, field_map=mapping.columns, source_geom=src,
            source_unit_m=(None if resolved is None or resolved.is_geographic else resolved.unit_factor()),
            repaired=repaired, file=layer.file, spec_id=match.spec.id, outliers=outliers if outliers.any() else None,
            mapping=mapping)
        if layer.rest is not None and fixed is None:
            self._decided[id(batch)] = (match, resolved, centre)
        return batch


def _note_feet(layer: str, resolved, match: Match, notes: list[Note]) -> None:
    """Say so when a layer's coordinates are in feet but the spec reads some of its measures in
    metres (a US delivery read with a Chinese profile)."""
    factor = resolved.unit_factor()
    if resolved.is_geographic or abs(factor - 1.0) < 1e-6:
        return
    metres = re.compile(assistant_settings()["metre_columns"])
    plain = [f"{f.source}→{f.column}" for f in match.fields
             if metres.fullmatch(f.column) and (fs := match.spec.fields.get(f.column)) is not None and fs.unit in (None, "m")]
    if plain:
        notes.append(Note(layer, "units", f"坐标单位为英尺（每单位 {factor:g} 米），而规范 {match.profile.id} 的以下字段"
                          f"按米读取：{'、'.join(plain)}；如为英尺，请改用声明单位的规范（如 us-stormwater）",
                          f"the coordinates are in feet ({factor:g} m per unit) but profile {match.profile.id} reads "
                          f"{', '.join(plain)} as metres; if they are feet, use a profile that "
                          "declares them (e.g. us-stormwater)"))


def _feature_xy(layer: SourceLayer, match: Match) -> np.ndarray | None:
    """Bounding boxes (minx, miny, maxx, maxy) of each feature in source coordinates."""
    if layer.geom is not None:
        return shapely.bounds(layer.geom).T
    if match.spec.coords is not None:
        e, n = table_coordinates(layer.frame, match)
        return np.stack([e, n, e, n])
    return None


def _centre(b: np.ndarray) -> tuple[float, float] | None:
    """The median of the features' centres, or None with fewer than five located features."""
    ok = np.isfinite(b).all(axis=0)
    if ok.sum() < 5:
        return None
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    return float(np.median(cx[ok])), float(np.median(cy[ok]))


def _outliers(b: np.ndarray, centre: tuple[float, float] | None) -> np.ndarray:
    """Features whose coordinates lie far from ``centre``, the layer's median (a stray 0 or a
    typo in one row must not decide the CRS of the whole layer); none without a centre."""
    ok = np.isfinite(b).all(axis=0)
    out = np.zeros(b.shape[1], dtype=bool)
    if centre is None:
        return out
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    mx, my = centre
    degrees = abs(mx) <= 180 and abs(my) <= 90
    span = OUTLIER_SPAN["degrees" if degrees else "metres"]
    with np.errstate(invalid="ignore"):
        out[ok] = (np.abs(cx[ok] - mx) > span) | (np.abs(cy[ok] - my) > span)
    return out


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

"""Validate a delivery: every rule of ``ingest/rules.yaml`` on every batch → :class:`Report`.

Rule ids and severities follow domain.md §2.13 (error rejects the delivery, warning loads and
flags). All rules work on whole columns (pandas / numpy / shapely 2).

Validation comes in two parts, so a delivery need not be held whole while it is checked
(:class:`Validation`): the rules of one batch (fields, geometry, buildings, duplicates of loaded
features, and the county boundary when it is known) run as soon as the batch is complete
(:meth:`Validation.add`), which then puts a *residue* in the batch's place in
``delivery.batches``: the columns and geometries the rules across batches still read (the pipe
network's points and segments, the delivered county boundary), and for every other layer its
source rows only. The rules across batches (network, drainage, clearances) run on the residues
once every batch is in (:meth:`Validation.finish`). :func:`validate` does both on a delivery
read beforehand; the findings are the same either way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import shapely

from ingest.mapping.geometry import Extent, metric_geometry
from ingest.mapping.normalize import load_dictionaries
from ingest.memory import release_free_memory
from ingest.model import Delivery, LayerBatch, Report, arrow_text
from ingest.validation.clearance import check_clearance, check_parallel, with_loaded
from ingest.validation.core import Ctx, load_rules
from ingest.validation.drainage import check_drainage
from ingest.validation.existing import check_existing
from ingest.validation.fields import check_fields, check_poles
from ingest.validation.geometry import (
    admin_boundary,
    check_buildings,
    check_geometry,
    check_inside_county,
    county_area,
    county_boundary,
    inside_county,
    loaded_boundary,
)
from ingest.validation.network import METRIC, PCOLS, SCOLS, check_network, gather, metric_columns
from ingest.validation.spill import MappedWkb, Spill, joined_frames

# the columns the rules across batches read, per target (besides source_row and geom)
_RESIDUE = {"pipe_point": [*PCOLS, "code"], "pipe_segment": [*SCOLS, "code"], "streetlight": ["pole_no"]}
# what names a feature in a finding (ingest.validation.core.key_column)
_KEYS = ["exp_no", "pole_no", "code", "name"]


def validate(delivery: Delivery, conn=None, *, rules_path: Path | str | None = None) -> Report:
    """Check a delivery and return its report (findings sorted by severity, rule, layer, row).

    ``conn`` (psycopg2, optional) enables the county-boundary check against loaded admin
    areas, the dictionaries as stored in the database and the duplicate check against loaded
    features. The delivery is left as it is (it can be validated again).
    """
    validation = Validation(delivery, conn, rules_path=rules_path, slim_rows=None)
    for batch in list(delivery.batches):
        validation.add(batch)
    return validation.finish()


class Validation:
    """The validation of one delivery, fed batch by batch as they are read.

    :meth:`add` checks one complete batch of ``delivery.batches`` and, when it has ``slim_rows``
    rows or more, replaces it there by its residue (``slim_rows`` None: never); :meth:`finish` runs the rules across batches and returns the sorted
    report. The batch given to :meth:`add` is not changed (a loader may still be writing it).
    """

    def __init__(self, delivery: Delivery, conn=None, *, rules_path: Path | str | None = None,
                 slim_rows: int | None = 0) -> None:
        self.ctx = Ctx(delivery, load_rules(str(rules_path) if rules_path else None), load_dictionaries(conn), conn)
        self.delivery, self.slim_rows = delivery, slim_rows
        self.deferred: list[LayerBatch] = []     # residues still waiting for the county boundary (Q24)
        self.deferred_layers: set[tuple] = set()  # (file, layer, target) of those
        self.last: dict[tuple, LayerBatch] = {}  # the residue of each layer read in chunks so far
        self._asked = False                      # the loaded county boundary was looked up
        self._area = None                        # the county boundary, buffered and prepared
        self.spill = Spill()                     # keys and geometries of deferred residues, on disk
        self.stored = Spill()                    # the residues of layers read in chunks, on disk
        self.wkb = MappedWkb()                   # and their geometries, read back memory-mapped
        self.spilled_keys: dict[tuple, set[str]] = {}   # the key columns of each spilled layer's chunks
        self.segments = Extent()                 # of the pipe segments added (for the clearances)

    def _county_area(self):
        """The county boundary (buffered for Q24) as far as it is known now: the loaded one, else
        the first delivered county area among the batches added so far (None: not known yet)."""
        if self._area is None:
            boundary = None
            if not self._asked:
                self._asked = True
                boundary = loaded_boundary(self.ctx)
            if boundary is None:
                boundary = admin_boundary(self.ctx)
            if boundary is not None:
                self._area = county_area(self.ctx, boundary)
        return self._area

    def add(self, batch: LayerBatch) -> LayerBatch:
        """Run the rules of one batch of the delivery and put its residue in its place (a batch
        of ``slim_rows`` rows or more); returns what stays in the delivery."""
        ctx = self.ctx
        check_fields(ctx, batch)
        check_geometry(ctx, batch)
        if batch.target == "building":
            check_buildings(ctx, batch)
        check_existing(ctx, batch)
        if batch.target == "pipe_segment":
            self.segments.add(shapely.bounds(batch.geometries()))
        key = (batch.file, batch.source_layer, batch.target)
        if batch.chunk:                          # a later chunk: as the layer's first chunk decided
            deferred = key in self.deferred_layers
            if not deferred and ctx.delivery.county_code and ctx.rule("Q24") is not None:
                area = self._county_area()
                if area is not None:
                    inside_county(ctx, batch, area)
        else:
            deferred = False
            if batch.target != "admin_area" and ctx.delivery.county_code and ctx.rule("Q24") is not None:
                area = self._county_area()
                if area is not None:
                    inside_county(ctx, batch, area)
                else:
                    deferred = True
                    self.deferred_layers.add(key)
        slim = self.slim_rows is not None and (batch.chunk is not None or len(batch) >= self.slim_rows)
        residue = _residue(batch, deferred) if slim else batch
        if slim and deferred and batch.target not in _RESIDUE and residue.packed:   # Q24's keys and geometries
            self.spill.put(key, residue.frame)                                    # wait on disk
            self.spilled_keys.setdefault(key, set()).update(c for c in residue.frame.columns if c in _KEYS)
            residue = dataclasses.replace(residue, frame=residue.frame[["source_row"]], packed=False)
        stored = slim and batch.chunk is not None and batch.target != "admin_area"
        if stored:                               # the rows wait on disk until finish() joins them
            frame = residue.frame
            if residue.packed and "geom" in frame.columns:
                self.wkb.put(key, frame["geom"])
                frame = frame.drop(columns="geom")
            self.stored.put_columns(key, frame)
            residue = dataclasses.replace(residue, frame=_empty(residue.frame))
        if batch.chunk and key in self.last:     # joined to the residue of the layer's earlier chunks
            before = self.last[key]
            residue = _joined(before, residue)
            self.delivery.batches[:] = [b for b in self.delivery.batches if b is not batch]
            self._put(before, residue)
        elif slim:
            self._put(batch, residue)
        if deferred and not batch.chunk:
            self.deferred.append(residue)
        if slim:
            self.last[key] = residue
        return residue

    def _put(self, old: LayerBatch, new: LayerBatch) -> None:
        """``new`` in the place of ``old`` in the delivery (and among the deferred residues)."""
        for i, b in enumerate(self.delivery.batches):
            if b is old:
                self.delivery.batches[i] = new
                break
        self.deferred = [new if b is old else b for b in self.deferred]

    def _deferred(self) -> Iterator[LayerBatch]:
        """The residues waiting for Q24, those on disk read back chunk by chunk, each chunk with
        the key column the layer's joined residue would show (the first of ``_KEYS`` any chunk kept)."""
        for b in self.deferred:
            key = (b.file, b.source_layer, b.target)
            if key not in self.spill:
                yield b
                continue
            name = next((c for c in _KEYS if c in self.spilled_keys[key]), None)
            for frame in self.spill.chunks(key):
                if name is not None and name not in frame.columns:
                    frame[name] = None
                cols = ["source_row", *([name] if name else []), "geom"]
                yield dataclasses.replace(b, frame=frame[cols], packed=True)

    def join_stored(self, targets: Collection[str] | None = None) -> None:
        """Put the residue of each layer read in chunks, its chunks joined from disk, in the
        delivery (done by :meth:`finish` when not called before). With ``targets``, only the
        layers of those tables, whose reading is over (the pipe points that lines without
        geometry are built from); the others stay on disk."""
        try:
            for key, head in list(self.last.items()):
                if key in self.stored and (targets is None or key[2] in targets):
                    frame = self.stored.joined(key)
                    if key in self.wkb:
                        frame["geom"] = self.wkb.column(key)
                    self.last[key] = joined = dataclasses.replace(head, frame=frame)
                    self._put(head, joined)
        finally:
            if targets is None:
                self.stored.close()
                self.wkb.close()

    def finish(self) -> Report:
        """Run the rules across batches on the residues; the report, findings sorted."""
        ctx = self.ctx
        self.join_stored()
        try:
            if self.deferred:
                check_inside_county(ctx, county_boundary(ctx), self._deferred())
        finally:
            self.spill.close()
        for b in self.delivery.batches:
            check_poles(ctx, b)
        net = gather(self.delivery.batches)
        if net is not None:
            release_free_memory()                # what gathering the network freed, before its rules
            ends = check_network(ctx, net)
            if ends is not None:
                check_drainage(ctx, net, ends)
            del ends                             # one row per segment end: not needed by the clearances
            release_free_memory()
            near = with_loaded(ctx, net, self.segments)
            check_clearance(ctx, net, near)
            release_free_memory()
            check_parallel(ctx, net, near)
        order = {"error": 0, "warning": 1, "info": 2}
        ctx.report.findings.sort(key=lambda f: (order[f.severity.value], f.rule_id, f.source_layer, f.row or 0))
        return ctx.report


def _joined(a: LayerBatch, b: LayerBatch) -> LayerBatch:
    """The residues of two chunks of one layer as one (the second's rows after the first's)."""
    geoms = None if a.source_geom is None or b.source_geom is None else np.concatenate([a.source_geom, b.source_geom])
    same = (a.network, a.subtype) == (b.network, b.subtype)
    return dataclasses.replace(a, frame=joined_frames([a.frame, b.frame]), source_geom=geoms,
                               network=a.network if same else None, subtype=a.subtype if same else None,
                               source_metric=a.source_metric and b.source_metric)


def _empty(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame of no rows with the columns of ``frame`` (new arrays: a slice of a column would
    keep its values in memory)."""
    return pd.DataFrame({c: pd.array([], dtype=frame[c].dtype) for c in frame.columns})


def _residue(batch: LayerBatch, keep_geom: bool) -> LayerBatch:
    """What the rules across batches still need of a checked batch: a new batch (the given one
    is left as it is) with the network columns of pipe batches (text as Arrow text), their
    metric source coordinates (:func:`metric_columns`) and their EPSG:4490 geometries as WKB, a delivered county boundary whole, and of every other layer its
    source rows (and, with ``keep_geom``, its geometries and keys for the county-boundary rule)."""
    if batch.target == "admin_area":
        return batch
    f = batch.frame
    if batch.target in _RESIDUE:
        cols = [c for c in _RESIDUE[batch.target] if c in f.columns] + ["source_row"]
        frame = pd.DataFrame({c: _shared(f[c]) for c in cols}, index=f.index)
        metric = batch.target in METRIC and batch.source_geom is not None and bool(batch.source_unit_m)
        if metric:
            for c, v in metric_columns(batch.target, metric_geometry(batch)).items():
                frame[f"metric_{c}"] = v
        frame["geom"] = _wkb(f["geom"])
        return dataclasses.replace(batch, frame=frame, raw=None, repaired=None, outliers=None, packed=True,
                                   source_geom=None, source_metric=metric)
    key = next((c for c in _KEYS if c in f.columns and f[c].notna().any()), None)   # as key_column picks
    if not keep_geom:
        return dataclasses.replace(batch, frame=f[["source_row"]].copy(), raw=None, repaired=None, outliers=None,
                                   source_geom=None)
    frame = f[["source_row", *([key] if key else [])]].copy()
    frame["geom"] = _wkb(f["geom"])
    return dataclasses.replace(batch, frame=frame, raw=None, repaired=None, outliers=None, source_geom=None,
                               packed=True)


def _wkb(geom: pd.Series) -> pd.arrays.ArrowExtensionArray:
    """Geometries as WKB in one Arrow binary array (a tenth of their size as shapely objects,
    half of it as Python bytes)."""
    return pd.arrays.ArrowExtensionArray(pa.array(shapely.to_wkb(geom.to_numpy()), type=pa.binary()))


_CODED = frozenset({"network", "subtype", "feature", "appurtenance", "node_type", "z_ref", "material",
                    "burial_type", "pressure_class"})
"""Residue text columns of few distinct values (codes of the data dictionaries): kept as
categoricals, one byte per row instead of an Arrow string."""


def _shared(column: pd.Series) -> pd.Series:
    """A text column as Arrow text, or as a categorical for the columns of :data:`_CODED`: no
    Python object per value stays behind from the chunk it was read with (kept objects would
    pin the interpreter's memory pools of every chunk); other columns as they are."""
    values = column.to_numpy()
    if values.dtype != object or pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        return column
    if column.name in _CODED:              # categories as objects, as the chunks' others are
        codes, uniques = pd.factorize(values, sort=True)
        dtype = pd.CategoricalDtype(pd.Index(uniques, dtype=object))
        return pd.Series(pd.Categorical.from_codes(codes, dtype=dtype), index=column.index, name=column.name)
    return pd.Series(pd.arrays.ArrowExtensionArray(arrow_text(values)), index=column.index, name=column.name)

"""The mapping stage: each source layer onto its target table, as a :class:`~ingest.model.LayerBatch`.

In the order a layer goes through them:

- :mod:`ingest.mapping.profile` — delivery profiles (YAML) and detection: which profile layer
  spec a source layer is, and which delivered field fills each target column
  (:class:`~ingest.model.LayerMapping`, one per layer, with the rule that decided each field);
- :mod:`ingest.mapping.normalize` — values: types, units, code lists and dictionaries, derived
  columns (network, z reference, node type, green class, build era);
- :mod:`ingest.mapping.crsdetect` — the CRS of the layer: declared, repaired (swapped axes, zone
  prefixes) or inferred, and datum shifts to CGCS2000;
- :mod:`ingest.mapping.geometry` — geometries to EPSG:4490 in the target's type; metric
  coordinates for distances;
- :mod:`ingest.mapping.lines` — pipe segments built from the point tables, and their lengths;
- :mod:`ingest.mapping.layer` — :class:`~ingest.mapping.layer.Mapper`, which runs the above for
  every layer of a delivery.
"""

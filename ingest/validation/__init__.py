"""Validation rules of deliveries (``ingest/rules.yaml``): fields, geometry, network, drainage,
buildings and duplicates of loaded features. Entry point: :func:`ingest.validate.validate`."""

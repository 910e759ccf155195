"""Ingest of county survey deliveries, as stages: readers → mapping → validation → load.

:mod:`ingest.pipeline` runs them top to bottom (``cim ingest``, the upload service in
:mod:`ingest.service`); :mod:`ingest.model` is the data between them. See docs/ingest.md.
"""

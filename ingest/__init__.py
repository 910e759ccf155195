"""Ingest of county survey deliveries: readers, spec profiles, validation, atomic loader."""

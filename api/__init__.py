"""The FastAPI application: OGC API Features/Tiles, one-map tiles, queries, ingest, 3D Tiles, web map."""

"""Routers of the API. Each module has ``register(app)``; add new ones to this list."""

ROUTERS = [
    "api.routers.meta",
    "api.routers.ingest",
    "api.routers.features",
    "api.routers.query",
    "api.routers.search",
    "api.routers.tiles",
    "api.routers.tiles3d",
    "api.routers.dem",
    "api.routers.tasks",
]

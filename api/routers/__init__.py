"""Routers of the API. Each module has ``register(app)``; add new ones to this list."""

ROUTERS = [
    "api.routers.meta",
    "api.routers.tiles",
]

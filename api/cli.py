"""``cim serve``: run the HTTP server.

``--workers N`` (or ``CIM_API_WORKERS``) runs N server processes behind one port with uvicorn's
own supervisor: each process imports the app factory and has its own connection pools, data
version watcher and tile caches; the supervisor restarts a process that dies. Everything shared
lives in the database (background tasks are claimed with ``FOR UPDATE SKIP LOCKED``, caches
follow the data versions through NOTIFY), so several hosts on one database work the same way
(docs/operations.md "Several server processes and hosts").
"""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from cim.settings import ApiSettings


def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default CIM_API_HOST or 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default CIM_API_PORT or 8000)")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="server processes (default CIM_API_WORKERS or 1)")] = None,
) -> None:
    """Serve the API and the web map (OpenAPI at /docs)."""
    s = ApiSettings()
    uvicorn.run("api.app:factory", factory=True, host=host or s.host, port=port or s.port,
                workers=workers or s.workers, log_level="warning", access_log=False)

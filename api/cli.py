"""``cim serve``: run the HTTP server."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from cim.settings import ApiSettings


def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default CIM_API_HOST or 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default CIM_API_PORT or 8000)")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes")] = None,
) -> None:
    """Serve the API and the web map (OpenAPI at /docs)."""
    s = ApiSettings()
    uvicorn.run("api.app:factory", factory=True, host=host or s.host, port=port or s.port,
                workers=workers or s.workers, log_level="warning", access_log=False)

"""Helpers every test package uses: a connection rolled back afterwards, ``cim …`` as a
subprocess, and a live server (in a thread or a process) waited for until ``/health`` answers.

On the import path of every test through pytest's ``pythonpath`` setting (pyproject.toml).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg2
import psycopg2.extensions

ROOT = Path(__file__).resolve().parents[2]
CIM_BIN = Path(sys.executable).parent / "cim"


@contextlib.contextmanager
def connection(url: str) -> Iterator[psycopg2.extensions.connection]:
    """A connection to ``url``; uncommitted work is rolled back and the connection closed afterwards."""
    c = psycopg2.connect(url)
    try:
        yield c
    finally:
        c.rollback()
        c.close()


def token(url: str, role, counties: list[str] | None = None, *, name: str = "test") -> str:
    """A new API token of ``role`` (a :class:`cim.auth.Role`) for ``counties``, committed; its secret."""
    from cim.auth import create_token

    with connection(url) as c:
        with c.cursor() as cur:
            tok = create_token(cur, name=name, role=role, counties=list(counties or []))
        c.commit()
    return tok.secret


def run_cim(url: str, *args: str, env: dict | None = None, input: str | None = None, check: bool = False,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``cim ARGS`` against the database ``url``; ``check`` fails the test on a non-zero exit."""
    res = subprocess.run([str(CIM_BIN), *args], capture_output=True, text=True, input=input, timeout=timeout,
                         env=dict(os.environ, CIM_DATABASE_URL=url, **(env or {})), cwd=ROOT)
    if check and res.returncode != 0:
        raise AssertionError(f"cim {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def healthy(base: str) -> bool:
    """Whether a server answers ``GET /health`` with 200."""
    try:
        return httpx.get(base + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(base: str, timeout_s: float = 60.0, *, proc: subprocess.Popen | None = None,
                 log: Path | None = None) -> None:
    """Wait until the server at ``base`` is healthy; RuntimeError (with the log's tail) when its
    process exits first or the time runs out."""
    tail = (lambda: "\n" + log.read_text(errors="replace")[-3000:]) if log is not None else (lambda: "")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}){tail()}")
        if healthy(base):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the server at {base} did not start{tail()}")


@dataclass
class ThreadServer:
    """The app served by uvicorn on a thread of the test process."""

    url: str
    port: int
    server: object
    thread: threading.Thread

    def stop(self, timeout_s: float = 15) -> None:
        """Graceful shutdown (runs the app's shutdown hooks)."""
        self.server.should_exit = True  # type: ignore[attr-defined]
        self.thread.join(timeout_s)


def serve(app, *, port: int | None = None, lifespan: str = "on") -> ThreadServer:
    """Serve ``app`` on 127.0.0.1 (a free port unless given) in a daemon thread, once healthy."""
    import uvicorn

    from cim.embedded import free_port

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url)
    return ThreadServer(url, port, server, thread)

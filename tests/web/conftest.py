"""Browser-test fixtures: the real app with the built web map, and Debian's Chromium.

- ``web_db``: a database of its own on the session's test cluster (migrated, seeded from
  ``seed.sql``, dropped afterwards), so these tests never see other packages' rows;
- ``web_dist``: ``web/dist``, built with ``npm run build`` when missing or older than the sources;
- ``web_server``: ``api.app.create_app`` under uvicorn on a free port (public reads on), serving
  the API and web/dist; yields an object with ``url``, ``db_url`` and ``home``;
- ``browser``: /usr/bin/chromium driven by Playwright (never a downloaded browser), with
  SwiftShader WebGL so MapLibre and CesiumJS render headless;
- ``page``: a fresh page that records console errors and failed requests (``page.errors``).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import httpx
import psycopg2
import pytest
import testkit

from cim.migrate import migrate

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WEB = ROOT / "web"
WEB_COUNTY = "990002"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def web_db(make_database):
    """A migrated database with the web-test county only; dropped at the end."""
    url = make_database("cim_web")
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute((HERE / "seed.sql").read_text(encoding="utf-8"))
        conn.commit()
    finally:
        conn.close()
    yield url


def _newest(paths) -> float:
    return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)


@pytest.fixture(scope="session")
def web_dist() -> Path:
    """The built web map; rebuilt when a source is newer than the bundle."""
    dist = WEB / "dist"
    sources = [*WEB.glob("src/**/*.js"), *WEB.glob("src/*.css"), WEB / "index.html", WEB / "build.mjs"]
    if _newest([dist / "index.html", dist / "app.js"]) < _newest(sources) or not (dist / "cesium" / "Cesium.js").exists():
        if not (WEB / "node_modules").is_dir():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True, capture_output=True)
        subprocess.run(["npm", "run", "build"], cwd=WEB, check=True, capture_output=True)
    return dist


class WebServer:
    """uvicorn running create_app in a background thread."""

    def __init__(self, db_url: str, dist: Path, home: Path, routers: list[str] | None = None) -> None:
        import uvicorn

        import api.app
        from api.app import create_app
        from cim.settings import ApiSettings, AuthSettings, DatabaseSettings, IngestSettings, Settings, TileSettings

        self.db_url, self.home = db_url, home
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = Settings(db=DatabaseSettings(database_url=db_url, home=home, pool_max=4),
                            auth=AuthSettings(public_read=True), api=ApiSettings(web_root=dist, port=self.port),
                            ingest=IngestSettings(archive_dir=home / "archive"),
                            tiles=TileSettings(threed_dir=home / "3dtiles"))
        saved = api.app.ROUTERS
        if routers is not None:  # an API with only some routers: endpoints "not there yet"
            api.app.ROUTERS = [r for r in saved if r in routers]
        try:
            self.app = create_app(settings)
        finally:
            api.app.ROUTERS = saved
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> WebServer:
        self.thread.start()
        testkit.wait_healthy(self.url)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def has(self, method: str, path: str) -> bool:
        """Whether the app has a route for this method and path template (endpoint landed)."""
        def norm(p: str | None) -> str:
            return re.sub(r"\{[^}]+\}", "{}", p or "")

        paths = self.app.openapi().get("paths", {})
        return any(norm(p) == norm(path) and method.lower() in ops for p, ops in paths.items())


@pytest.fixture(scope="session")
def web_server(web_db, web_dist):
    """The app on a free port with the web-test county, public reads on."""
    home = Path(tempfile.mkdtemp(prefix="cim-web-", dir="/tmp"))
    server = WebServer(web_db, web_dist, home).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def partial_server(web_db, web_dist):
    """The app with only the catalogue, features and tile routers (no queries, search, ingest, 3D)."""
    home = Path(tempfile.mkdtemp(prefix="cim-web-partial-", dir="/tmp"))
    server = WebServer(web_db, web_dist, home,
                       routers=["api.routers.meta", "api.routers.features", "api.routers.tiles"]).start()
    yield server
    server.stop()


@pytest.fixture
def page(browser):
    """A fresh 1280×800 page; ``page.errors`` collects console errors and page exceptions, ``page.failed`` HTTP errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN", accept_downloads=True)
    pg = context.new_page()
    pg.errors = []
    pg.on("console", lambda m: pg.errors.append(f"console.{m.type}: {m.text} ({m.location.get('url', '')})")
          if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(f"pageerror: {e}"))
    pg.failed = []
    pg.on("response", lambda r: pg.failed.append(f"{r.status} {r.request.method} {r.url}") if r.status >= 400 else None)
    yield pg
    context.close()


def submit_upload(page, token: str, county: str, files, profile: str | None = None) -> None:
    """Open the upload panel, fill in the token, county, files (and profile) and start the check."""
    page.locator("#btn-upload").click()
    page.locator("#upload-token").fill(token)
    page.locator("#upload-county").fill(county)
    page.locator("#upload-files").set_input_files(files)
    if profile:
        page.wait_for_function(f"document.querySelector('#upload-profile option[value=\"{profile}\"]') !== null")
        page.locator("#upload-profile").select_option(profile)
    page.locator("#upload-start").click()


def open_map(page, server: WebServer, view: str = "17/27.2/111.5", lang: str | None = None) -> None:
    """Open the app at a view (#zoom/lat/lon) and wait until the map is idle with everything drawn."""
    if lang:
        page.add_init_script(f"localStorage.setItem('cim.lang', '{lang}')")
    page.goto(f"{server.url}/#{view}")
    page.wait_for_function("document.body.dataset.ready === 'true'", timeout=60_000)
    wait_idle(page)


def wait_idle(page, timeout: int = 60_000) -> None:
    """Wait until MapLibre has loaded every tile of the view and rendered it ('idle')."""
    page.evaluate("""() => {
        const m = window.cim.map;
        window.__cimIdle = false;
        m.once('idle', () => { window.__cimIdle = true; });
        m.triggerRepaint();
    }""")
    page.wait_for_function("window.__cimIdle === true", timeout=timeout)


def screen_xy(page, lon: float, lat: float) -> tuple[float, float]:
    """Page pixel position of a lon/lat on the 2D map."""
    p = page.evaluate("([lon, lat]) => window.cim.map.project([lon, lat])", [lon, lat])
    box = page.locator("#map").bounding_box()
    return box["x"] + p["x"], box["y"] + p["y"]


def click_lonlat(page, lon: float, lat: float, double: bool = False) -> None:
    """Click (or double-click) the 2D map at a lon/lat."""
    x, y = screen_xy(page, lon, lat)
    if double:
        page.mouse.dblclick(x, y)
    else:
        page.mouse.click(x, y)

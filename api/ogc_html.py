"""Plain HTML views of the OGC API – Features documents for people browsing ``/ogc``.

Served for ``f=html`` or when a browser asks for ``text/html`` first; machine clients (GDAL,
OWSLib, the web map) get JSON as before. Every value is escaped.
"""

from __future__ import annotations

import json
from html import escape

from fastapi import Request
from fastapi.responses import HTMLResponse

_STYLE = ("body{font-family:'Noto Sans CJK SC',sans-serif;margin:2em;max-width:70em}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}"
          "code{background:#f4f4f4}")


def wants_html(request: Request) -> bool:
    """``f=html``, or no ``f`` and an Accept header that puts text/html first (a browser)."""
    f = request.query_params.get("f")
    if f is not None:
        return f == "html"
    accept = request.headers.get("accept", "")
    return accept.split(",")[0].strip().startswith("text/html")


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html lang='zh'><head><meta charset='utf-8'><title>{escape(title)}</title>"
                        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>")


def _links(links: list[dict]) -> str:
    items = "".join(f"<li><a href='{escape(link['href'])}'>{escape(link.get('title') or link['rel'])}</a> "
                    f"<code>{escape(link['rel'])}</code></li>" for link in links)
    return f"<ul>{items}</ul>"


def landing(doc: dict) -> HTMLResponse:
    """Landing page: description and links."""
    return _page(doc["title"], f"<p>{escape(doc['description'])}</p>{_links(doc['links'])}")


def conformance(doc: dict) -> HTMLResponse:
    """Conformance classes."""
    return _page("符合性声明 / conformance", "<ul>" + "".join(f"<li><code>{escape(c)}</code></li>"
                                                          for c in doc["conformsTo"]) + "</ul>")


def collections(doc: dict) -> HTMLResponse:
    """Collections table."""
    rows = "".join(f"<tr><td><a href='{escape(c['links'][0]['href'])}?f=html'>{escape(c['id'])}</a></td>"
                   f"<td>{escape(c['title'])}</td><td>{escape(c['description'])}</td>"
                   f"<td><a href='{escape(c['links'][1]['href'])}?f=html'>要素 / items</a></td></tr>"
                   for c in doc["collections"])
    return _page("图层集合 / collections",
                 f"<table><tr><th>id</th><th>名称</th><th>description</th><th></th></tr>{rows}</table>")


def collection(doc: dict) -> HTMLResponse:
    """One collection with its extent and links."""
    extent = doc.get("extent", {}).get("spatial", {}).get("bbox", [[]])[0]
    return _page(f"{doc['title']} ({doc['id']})",
                 f"<p>{escape(doc['description'])}</p><p>范围 / extent (CRS84): <code>{escape(str(extent))}</code></p>"
                 f"<p>存储坐标系 / storage CRS: <code>{escape(doc['storageCrs'])}</code></p>{_links(doc['links'])}")


def items(body: str, title: str) -> HTMLResponse:
    """A page of features as a table (properties, geometry type) with the paging links."""
    fc = json.loads(body)
    feats = fc["features"]
    keys = list(feats[0]["properties"]) if feats else []
    head = "".join(f"<th>{escape(k)}</th>" for k in ["id", "geometry", *keys])
    rows = "".join("<tr>" + f"<td>{escape(str(f['id']))}</td><td>{escape((f.get('geometry') or {}).get('type', ''))}</td>"
                   + "".join(f"<td>{escape('' if f['properties'].get(k) is None else str(f['properties'][k]))}</td>"
                             for k in keys) + "</tr>" for f in feats)
    paging = [dict(link, href=link["href"] if "f=html" in link["href"]
                   else link["href"] + ("&" if "?" in link["href"] else "?") + "f=html")
              for link in fc["links"] if link["rel"] in ("next", "prev", "collection")]
    summary = f"<p>numberMatched {fc.get('numberMatched')} · numberReturned {fc['numberReturned']}</p>"
    return _page(title, summary + _links(paging) + f"<table><tr>{head}</tr>{rows}</table>")

"""TileJSON 3.0.0 and the one-map MapLibre style, generated from the layer catalogue.

Colours come from each spec's ``style`` (CJJ 61 network colours for pipelines), labels use the
Chinese attribute values through ``["get", attr]`` and the glyphs served by ``/fonts``; every
style layer carries ``metadata`` naming its catalogue layer and group (see
docs/api-contract.md, "Vector tiles").
"""

from __future__ import annotations

from layers.spec import LayerSpec
from tiles.glyphs import DEFAULT_FONTSTACK

_FIELD_TYPES = {"text": "String", "date": "String", "int": "Number", "float": "Number", "bool": "Boolean"}
CHINA_BOUNDS = [73.0, 3.0, 136.0, 54.0]  # fallback when no data is loaded yet


def tilejson(specs: list[LayerSpec], base_url: str, bounds: list[float] | None) -> dict:
    """TileJSON 3.0.0 document of a composite tile set."""
    ids = ",".join(s.id for s in specs)
    b = bounds or CHINA_BOUNDS
    minzoom = min(s.minzoom for s in specs)
    maxzoom = max(s.maxzoom for s in specs)
    center_zoom = max(minzoom, min(maxzoom, 14 if bounds else 4))
    return {
        "tilejson": "3.0.0",
        "name": " + ".join(s.title_zh for s in specs),
        "description": "CIM 一张图矢量瓦片 / CIM one-map vector tiles: " + ", ".join(s.title_en for s in specs),
        "version": "1.0.0",
        "attribution": "CIM 一张图",
        "scheme": "xyz",
        "tiles": [f"{base_url}/tiles/{ids}/{{z}}/{{x}}/{{y}}.mvt"],
        "minzoom": minzoom,
        "maxzoom": maxzoom,
        "bounds": b,
        "center": [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, center_zoom],
        "vector_layers": [
            {"id": s.id, "description": f"{s.title_zh} / {s.title_en}", "minzoom": s.minzoom, "maxzoom": s.maxzoom,
             "fields": {a.name: _FIELD_TYPES[a.type] for a in s.attributes}}
            for s in specs],
    }


def _color(spec: LayerSpec) -> str | list:
    st = spec.style
    if st.color_by and st.colors:
        expr: list = ["match", ["to-string", ["get", st.color_by]]]
        for value, col in st.colors.items():
            expr += [value, col]
        return expr + [st.color]
    return st.color


def _meta(spec: LayerSpec) -> dict:
    return {"cim:layer": spec.id, "cim:group": spec.group, "cim:group_zh": spec.group_zh,
            "cim:title_zh": spec.title_zh, "cim:title_en": spec.title_en}


def _base(spec: LayerSpec, suffix: str, kind: str, minzoom: int | None = None) -> dict:
    # a style layer's maxzoom is exclusive: the spec's last zoom is still drawn
    return {"id": spec.id + suffix, "type": kind, "source": "onemap", "source-layer": spec.id,
            "minzoom": spec.minzoom if minzoom is None else minzoom,
            "maxzoom": min(24, spec.maxzoom + 1), "metadata": _meta(spec)}


def style_layers(spec: LayerSpec) -> list[dict]:
    """MapLibre style layers of one catalogue layer (main, outline, centroid, label)."""
    st, out = spec.style, []
    polygon = spec.geometry.type in ("Polygon", "MultiPolygon")
    centroid_below = spec.generalisation.centroid_below if polygon else None
    main_min = max(spec.minzoom, centroid_below or 0)
    if st.kind == "fill":
        layer = _base(spec, "", "fill", minzoom=main_min)
        layer["paint"] = {"fill-color": _color(spec), "fill-opacity": st.opacity}
        out.append(layer)
        if st.outline_color:
            outline = _base(spec, "-outline", "line", minzoom=main_min)
            outline["paint"] = {"line-color": st.outline_color, "line-width": 0.6, "line-opacity": st.opacity}
            out.append(outline)
    elif st.kind == "fill-extrusion":
        layer = _base(spec, "", "fill-extrusion", minzoom=main_min)
        height: list | float = 3.0
        if spec.threed and spec.threed.height_attr:
            height = ["coalesce", ["get", spec.threed.height_attr], 3.0]
        layer["paint"] = {"fill-extrusion-color": _color(spec), "fill-extrusion-height": height,
                          "fill-extrusion-opacity": st.opacity}
        out.append(layer)
    elif st.kind == "line":
        layer = _base(spec, "", "line")
        layer["layout"] = {"line-cap": "round", "line-join": "round"}
        layer["paint"] = {"line-color": _color(spec), "line-width": st.width, "line-opacity": st.opacity}
        out.append(layer)
    else:
        layer = _base(spec, "", "circle")
        layer["paint"] = {"circle-color": _color(spec), "circle-radius": st.radius, "circle-opacity": st.opacity,
                          "circle-stroke-color": "#ffffff", "circle-stroke-width": 0.5}
        out.append(layer)
    if centroid_below is not None and centroid_below > spec.minzoom:
        # below centroid_below the tiles carry points (generalisation): draw them as dots
        dots = _base(spec, "-centroid", "circle")
        dots["maxzoom"] = centroid_below
        dots["filter"] = ["==", ["geometry-type"], "Point"]
        dots["paint"] = {"circle-color": _color(spec), "circle-radius": 1.5, "circle-opacity": st.opacity}
        out.append(dots)
    if st.label:
        label = _base(spec, "-label", "symbol", minzoom=max(spec.minzoom, st.label_minzoom or main_min))
        label["layout"] = {"text-field": ["to-string", ["get", st.label]], "text-font": [DEFAULT_FONTSTACK],
                           "text-size": 12, "text-max-width": 8}
        if st.kind == "line":
            label["layout"]["symbol-placement"] = "line"
        label["paint"] = {"text-color": "#333333", "text-halo-color": "#ffffff", "text-halo-width": 1.2}
        out.append(label)
    return out


def onemap_style(specs: list[LayerSpec], base_url: str) -> dict:
    """The MapLibre style (v8) of every public layer, in catalogue draw order."""
    ids = ",".join(s.id for s in specs)
    layers: list[dict] = [{"id": "background", "type": "background", "paint": {"background-color": "#f4f2ee"},
                           "metadata": {"cim:layer": None, "cim:group": "base"}}]
    labels: list[dict] = []
    for spec in specs:
        for layer in style_layers(spec):
            (labels if layer["type"] == "symbol" else layers).append(layer)
    return {
        "version": 8,
        "name": "CIM 一张图 / CIM one-map",
        "metadata": {"cim:generated_from": "layer catalogue", "cim:layers": [s.id for s in specs]},
        "sources": {"onemap": {"type": "vector", "url": f"{base_url}/tiles/{ids}.json"}},
        "glyphs": f"{base_url}/fonts/{{fontstack}}/{{range}}.pbf",
        "layers": layers + labels,
    }

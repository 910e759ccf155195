// The 2D map: MapLibre GL JS with the one-map style (/styles/onemap.json, one composite vector
// source) over a basemap made from our own data: the DEM hillshade (/tiles/hillshade, when
// /api/dem says a DEM is loaded) and an optional user-configured XYZ raster basemap URL
// (settings, localStorage). Nothing is fetched from the internet.
import maplibregl from "maplibre-gl";
import { getJSON } from "./api.js";
import { gaussKruger, zoneMeridian3 } from "./geo.js";
import { t, onLangChange, messageOf } from "./i18n.js";
import { notify, notifyError } from "./ui.js";

export const BASEMAP_KEY = "cim.basemap";
// Thematic layers that repeat rows of the all-network pipeline layers (drainage and gas pipes
// and points) start switched off: the default view shows each pipe once, in its CJJ 61 network
// colour, and the map parses and draws a third less. The layer tree switches them on.
export const START_HIDDEN = ["drainage_pipes", "drainage_nodes", "gas_pipes", "gas_points"];
export const GK_KEY = "cim.showGK";
const EMPTY_STYLE = { version: 8, sources: {}, layers: [] };

/** Make a URL absolute against the page (MapLibre's workers cannot resolve relative URLs). */
export function absolute(url) {
  return url ? new URL(url, window.location.href).href.replace(/%7B/g, "{").replace(/%7D/g, "}") : url;
}

/** Absolute source / glyph / sprite URLs in a style document. */
function absolutiseStyle(style) {
  for (const src of Object.values(style.sources || {})) {
    if (src.url) src.url = absolute(src.url);
    if (src.tiles) src.tiles = src.tiles.map(absolute);
  }
  if (style.glyphs) style.glyphs = absolute(style.glyphs);
  if (typeof style.sprite === "string") style.sprite = absolute(style.sprite);
  return style;
}

/** The one-map style, or an empty style plus a bilingual notice when it cannot be loaded. */
async function loadStyle() {
  try {
    return { style: absolutiseStyle(await getJSON("/styles/onemap.json")), ok: true };
  } catch (err) {
    notify(`${t("err.style")} — ${messageOf(err)}`, "error", 12000);
    return { style: structuredClone(EMPTY_STYLE), ok: false };
  }
}

/**
 * Basemap sources and layers (drawn below every one-map layer). `demPromise` is the /api/dem
 * request, started together with the style request so neither waits for the other.
 */
async function basemapLayers(style, demPromise) {
  const layers = [{ id: "basemap-background", type: "background", paint: { "background-color": "#f4f3ef" },
    metadata: { "cim:basemap": "background" } }];
  const custom = localStorage.getItem(BASEMAP_KEY);
  if (custom) {
    style.sources["basemap-custom"] = { type: "raster", tiles: [absolute(custom)], tileSize: 256, maxzoom: 19 };
    layers.push({ id: "basemap-custom", type: "raster", source: "basemap-custom", metadata: { "cim:basemap": "custom" } });
  }
  try {
    const dem = await demPromise;
    if (dem?.loaded) {
      // A hillshade is a backdrop: tiles up to z16 (≈ 2.4 m per pixel) are overzoomed beyond,
      // which keeps a street view at a handful of raster requests.
      style.sources["basemap-hillshade"] = { type: "raster", tiles: [absolute("/tiles/hillshade/{z}/{x}/{y}.png")],
        tileSize: 256, maxzoom: 16, ...(dem.bounds ? { bounds: dem.bounds } : {}) };
      layers.push({ id: "basemap-hillshade", type: "raster", source: "basemap-hillshade",
        paint: { "raster-opacity": 0.55, "raster-fade-duration": 0 }, metadata: { "cim:basemap": "hillshade" } });
    }
  } catch (err) {
    if (!err.unavailable) notifyError(err);
  }
  return layers;
}

/** Give the map its container's size now: a panel that has just opened or closed changes it, and
 * MapLibre learns of that only at its next resize observation, after a camera fitted to the old
 * size (a panel zooming to what it shows) would already be on its way. */
export function syncSize(map) {
  const box = map.getContainer(), canvas = map.getCanvas();
  if (box.clientWidth !== canvas.clientWidth || box.clientHeight !== canvas.clientHeight) map.resize();
}

/** Fit the view to the data extent given by the composite source's TileJSON bounds. */
async function fitToData(map, style) {
  const src = Object.values(style.sources || {}).find((s) => s.type === "vector" && s.url);
  if (!src) return;
  try {
    const tj = await getJSON(src.url);
    const b = tj?.bounds;
    if (b && b[0] > -180 && b[2] < 180 && b[2] - b[0] < 10) map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: 20, duration: 0 });
  } catch (err) {
    notifyError(err);
  }
}

function showCoordinates(map) {
  const box = document.getElementById("coords");
  const zoomBox = document.getElementById("zoomlevel");
  const render = (lngLat) => {
    const { lng, lat } = lngLat;
    let text = `CGCS2000 ${lng.toFixed(6)}°E ${lat.toFixed(6)}°N`;
    if (localStorage.getItem(GK_KEY) !== "0") {
      const cm = zoneMeridian3(lng);
      const { x, y } = gaussKruger(lng, lat, cm);
      text += `  |  GK ${cm}°E X=${x.toFixed(2)} Y=${y.toFixed(2)}`;
    }
    box.textContent = text;
  };
  map.on("mousemove", (e) => render(e.lngLat));
  const zoom = () => { zoomBox.textContent = `z ${map.getZoom().toFixed(2)}`; };
  map.on("zoom", zoom);
  map.on("load", () => { render(map.getCenter()); zoom(); });
}

/**
 * Create the 2D map in #map. Resolves once the style is set; `ready` on the result resolves at
 * the first 'load'. The view comes from the URL hash (#zoom/lat/lon/bearing/pitch), else the
 * style's center/zoom, else the data bounds.
 */
export async function createMap() {
  const demPromise = getJSON("/api/dem");
  demPromise.catch(() => {}); // handled in basemapLayers
  const { style, ok } = await loadStyle();
  // Basemap rasters go just above the style's own background layer(s), below every data layer.
  const base = await basemapLayers(style, demPromise);
  const layers = style.layers || [];
  const backgrounds = layers.filter((l) => l.type === "background");
  const rest = layers.filter((l) => l.type !== "background");
  style.layers = [...(backgrounds.length ? backgrounds : base.slice(0, 1)), ...base.slice(1), ...rest];
  for (const l of style.layers) {
    if (START_HIDDEN.includes(l.metadata?.["cim:layer"])) l.layout = { ...(l.layout || {}), visibility: "none" };
  }
  const hasHash = /^#\d/.test(window.location.hash);
  const map = new maplibregl.Map({
    container: "map",
    style,
    hash: true,
    center: style.center || [111.5, 27.2],
    zoom: style.zoom ?? 12,
    attributionControl: false,
    fadeDuration: 0, // labels appear at once: no 300 ms fade before the map is idle
    maxPitch: 75,
  });
  map.addControl(new maplibregl.NavigationControl({ visualizePitch: true }), "top-right");
  const scale = new maplibregl.ScaleControl({ unit: "metric", maxWidth: 140 });
  map.addControl(scale, "bottom-right");
  map.addControl(new maplibregl.AttributionControl({ compact: true, customAttribution: "CIM 一张图" }), "bottom-left");
  showCoordinates(map);
  map.on("error", (e) => {
    // Tile errors of optional sources are reported once per source, not per tile.
    const id = e.sourceId || e.source?.id;
    if (id && map.__reported?.has(id)) return;
    (map.__reported ||= new Set()).add(id);
    console.warn("map error", e.error?.message || e);
    if (id) notify(`${id}: ${e.error?.message || "error"}`, "error");
  });
  const ready = new Promise((resolve) => map.once("load", resolve));
  if (ok && !hasHash && !style.center) ready.then(() => fitToData(map, style));
  onLangChange(() => map.triggerRepaint());
  return { map, style, styleOk: ok, ready };
}

/** Style layers that belong to one catalogue layer (metadata "cim:layer"), in draw order. */
export function styleLayersOf(map, layerId) {
  return map.getStyle().layers.filter((l) => l.metadata?.["cim:layer"] === layerId);
}

/** Outline one or more GeoJSON features on top of the map (identify, search, report findings). */
export function highlight(map, features) {
  const data = { type: "FeatureCollection", features: (features || []).filter((f) => f?.geometry) };
  const src = map.getSource("cim-highlight");
  if (src) {
    src.setData(data);
    return;
  }
  map.addSource("cim-highlight", { type: "geojson", data });
  const hl = "#00a2ff";
  map.addLayer({ id: "cim-highlight-fill", type: "fill", source: "cim-highlight", filter: ["==", ["geometry-type"], "Polygon"],
    paint: { "fill-color": hl, "fill-opacity": 0.25 } });
  map.addLayer({ id: "cim-highlight-line", type: "line", source: "cim-highlight", filter: ["!=", ["geometry-type"], "Point"],
    paint: { "line-color": hl, "line-width": 4, "line-opacity": 0.9 } });
  map.addLayer({ id: "cim-highlight-point", type: "circle", source: "cim-highlight", filter: ["==", ["geometry-type"], "Point"],
    paint: { "circle-radius": 8, "circle-color": "rgba(0,0,0,0)", "circle-stroke-color": hl, "circle-stroke-width": 3 } });
}

// Identify: a click on the 2D map lists every feature at that spot (POST /api/query/identify,
// nearest first) in a popup, with the catalogue's Chinese attribute labels and dictionary codes
// shown with their names from /api/dictionaries/{table}.
import maplibregl from "maplibre-gl";
import { postJSON, layerCatalog, dictionary } from "./api.js";
import { t, pick, getLang } from "./i18n.js";
import { el, fmt, notifyError } from "./ui.js";
import { highlight } from "./map2d.js";

/** Metres per CSS pixel at a latitude and zoom (512 px tiles). */
export function metresPerPixel(lat, zoom) {
  return (40075016.686 * Math.cos((lat * Math.PI) / 180)) / 2 ** (zoom + 9);
}

/** Display text of one attribute value: dictionary name with the code, unit, yes/no. */
export async function formatValue(attr, value) {
  if (value === null || value === undefined || value === "") return null;
  if (attr?.dictionary) {
    const row = (await dictionary(attr.dictionary)).get(String(value));
    const name = row ? pick(row, "name") : "";
    return name && name !== String(value) ? `${name}（${value}）` : String(value);
  }
  if (attr?.type === "bool" || typeof value === "boolean") return value ? (getLang() === "en" ? "yes" : "是") : (getLang() === "en" ? "no" : "否");
  if (typeof value === "number" && attr?.type !== "int") return `${fmt(value, 3)}${attr?.unit ? ` ${attr.unit}` : ""}`;
  return `${value}${attr?.unit ? ` ${attr.unit}` : ""}`;
}

/** Table rows [label, value] for a feature, in catalogue attribute order. */
export async function attributeRows(spec, properties) {
  const rows = [];
  const known = new Set();
  for (const attr of spec?.attributes || []) {
    known.add(attr.name);
    const text = await formatValue(attr, properties[attr.name]);
    if (text !== null) rows.push([pick(attr, "label") || attr.name, text]);
  }
  for (const [k, v] of Object.entries(properties || {})) {
    // extra properties (3D Tiles metadata): skip the Chinese twins of coded attributes (their
    // names are shown above already) and the row id / layer bookkeeping
    if (known.has(k) || known.has(k.replace(/_zh$/, "")) || k === "id" || k === "layer") continue;
    if (v === null || v === "" || typeof v === "object") continue;
    rows.push([k, String(v)]);
  }
  return rows;
}

/** Identify controller for the 2D map. `visibleLayers()` gives the catalogue ids to query. */
export class Identify {
  constructor(map, visibleLayers) {
    this.map = map;
    this.visibleLayers = visibleLayers;
    this.popup = new maplibregl.Popup({ maxWidth: "380px", className: "identify-popup" });
    this.popup.on("close", () => highlight(map, []));
    this.enabled = true;
    map.on("click", (e) => this.enabled && this.run(e.lngLat));
  }

  /** Query the server at a point and show the result. */
  async run(lngLat) {
    this.abort?.abort();
    this.abort = new AbortController();
    const tolerance = Math.min(50, Math.max(0.5, 6 * metresPerPixel(lngLat.lat, this.map.getZoom())));
    try {
      const [fc, catalog] = await Promise.all([
        postJSON("/api/query/identify", { lon: lngLat.lng, lat: lngLat.lat, tolerance_m: tolerance, layers: this.visibleLayers() },
          { what: "POST /api/query/identify", signal: this.abort.signal }),
        layerCatalog(),
      ]);
      await this.show(lngLat, fc?.features || [], catalog);
    } catch (err) {
      notifyError(err);
    }
  }

  async show(lngLat, features, catalog) {
    const body = el("div", { class: "identify" }, el("div", { class: "identify-count" },
      features.length ? t("identify.count", { n: features.length }) : t("identify.none")));
    // Nearest first as the server orders them, but the base geography (admin areas, which
    // contain every click) after the city objects.
    const base = (f) => (catalog.get(f.layer)?.group === "base" ? 1 : 0);
    features = [...features].sort((a, b) => base(a) - base(b));
    for (const f of features) {
      const spec = catalog.get(f.layer);
      const title = spec ? pick(spec, "title") : f.layer_title_zh || f.layer;
      const rows = await attributeRows(spec, f.properties || {});
      const table = el("table", { class: "kv" }, el("tbody", {}, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))));
      const section = el("section", { class: "identify-feature", dataset: { layer: f.layer, id: String(f.id) },
        onmouseenter: () => highlight(this.map, [f]) }, el("h3", {}, `${title} #${f.id}`), table);
      body.append(section);
    }
    highlight(this.map, features.slice(0, 1));
    this.popup.setLngLat(lngLat).setDOMContent(body).addTo(this.map);
  }
}

// The legend, generated from the style (/styles/onemap.json): for each visible catalogue layer,
// its colour (a swatch shaped like its geometry) or, for a `match` expression on an attribute,
// one swatch per value labelled with the value's name from the attribute's dictionary.
import { layerCatalog, dictionary } from "./api.js";
import { t, pick, onLangChange } from "./i18n.js";
import { el } from "./ui.js";

const COLOR_PROP = { fill: "fill-color", line: "line-color", circle: "circle-color", "fill-extrusion": "fill-extrusion-color" };

/** Entries of a colour value: [{value, color}] (value null for the single or default colour). */
export function colorEntries(color) {
  if (typeof color === "string") return { attr: null, entries: [{ value: null, color }] };
  // ["match", ["get", attr], …] or ["match", ["to-string", ["get", attr]], …]
  let input = Array.isArray(color) && color[0] === "match" ? color[1] : null;
  if (Array.isArray(input) && input[0] === "to-string") input = input[1];
  if (Array.isArray(input) && input[0] === "get") {
    const entries = [];
    for (let i = 2; i < color.length - 1; i += 2) {
      const values = Array.isArray(color[i]) ? color[i] : [color[i]];
      for (const v of values) entries.push({ value: String(v), color: color[i + 1] });
    }
    entries.push({ value: null, color: color.at(-1) });
    return { attr: input[1], entries };
  }
  return { attr: null, entries: [] };
}

/** The legend for a map; re-rendered on language switch and on layer visibility changes. */
export class Legend {
  constructor(map, container) {
    this.map = map;
    this.container = container;
    onLangChange(() => this.render());
    map.on("styledata", () => this.schedule());
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.render(), 150);
  }

  async render() {
    const catalog = await layerCatalog().catch(() => new Map());
    const root = el("div", { class: "legend" });
    const seen = new Set();
    const layers = this.map.getStyle().layers.filter((l) => l.metadata?.["cim:layer"] && COLOR_PROP[l.type]).reverse();
    for (const l of layers) {
      const id = l.metadata["cim:layer"];
      if (seen.has(id) || this.map.getLayoutProperty(l.id, "visibility") === "none") continue;
      seen.add(id);
      const spec = catalog.get(id);
      const title = spec ? pick(spec, "title") : pick({ title_zh: l.metadata["cim:title_zh"], title_en: l.metadata["cim:title_en"] }, "title");
      const { attr, entries } = colorEntries(this.map.getPaintProperty(l.id, COLOR_PROP[l.type]));
      const dictName = spec?.attributes?.find((a) => a.name === attr)?.dictionary;
      const dict = dictName ? await dictionary(dictName) : new Map();
      const block = el("div", { class: "legend-layer", dataset: { layer: id } }, el("div", { class: "legend-title" }, title));
      for (const { value, color } of entries) {
        if (typeof color !== "string") continue;
        const label = value === null ? (entries.length > 1 ? t("legend.other") : "") : `${dict.get(value) ? pick(dict.get(value), "name") : value}`;
        block.append(el("div", { class: "legend-item" }, el("span", { class: `swatch ${l.type}`, style: `background:${color}` }), " ", label));
      }
      root.append(block);
    }
    this.container.replaceChildren(root);
  }
}

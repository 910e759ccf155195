// The layer tree: groups of catalogue layers read from the style's layer metadata
// ("cim:layer", "cim:group", "cim:title_zh/en"), a visibility switch and an opacity slider per
// layer, and, under the all-network pipeline layers, one switch per CJJ 61 network (JS 给水,
// PS 排水 with its YS/WS/HS subtypes, RQ 燃气 …) applied as a filter on the `network` property.
import { layerCatalog, dictionary } from "./api.js";
import { t, pick, onLangChange, getLang } from "./i18n.js";
import { el } from "./ui.js";

const GROUP_ORDER = ["buildings", "pipelines", "drainage", "gas", "green", "lighting", "base"];
const OPACITY_PROPS = {
  fill: ["fill-opacity"], line: ["line-opacity"], circle: ["circle-opacity", "circle-stroke-opacity"],
  symbol: ["text-opacity", "icon-opacity"], "fill-extrusion": ["fill-extrusion-opacity"], raster: ["raster-opacity"],
  heatmap: ["heatmap-opacity"],
};

/** Layer tree state and DOM for one map. */
export class LayerTree {
  constructor(map, container) {
    this.map = map;
    this.container = container;
    this.original = new Map(); // style layer id → {filter, paint opacities}
    this.hiddenNetworks = new Set(); // "JS" or "PS/YS"
    this.opacity = new Map(); // catalogue layer id → 0..1
    for (const l of map.getStyle().layers) {
      const paint = {};
      for (const p of OPACITY_PROPS[l.type] || []) paint[p] = map.getPaintProperty(l.id, p);
      this.original.set(l.id, { filter: l.filter, paint });
    }
    onLangChange(() => this.render());
  }

  /** Catalogue layers present in the style, grouped: [{group, title, layers: [{id, title, styleIds}]}]. */
  groups() {
    const byLayer = new Map();
    for (const l of this.map.getStyle().layers) {
      const id = l.metadata?.["cim:layer"];
      if (!id) continue;
      if (!byLayer.has(id)) byLayer.set(id, { id, group: l.metadata["cim:group"] || "other", meta: l.metadata, styleIds: [] });
      byLayer.get(id).styleIds.push(l.id);
    }
    const groups = new Map();
    for (const item of [...byLayer.values()].reverse()) { // top-most layer first
      if (!groups.has(item.group)) groups.set(item.group, []);
      groups.get(item.group).push(item);
    }
    const rank = (g) => (GROUP_ORDER.includes(g) ? GROUP_ORDER.indexOf(g) : GROUP_ORDER.length);
    return [...groups.entries()].sort((a, b) => rank(a[0]) - rank(b[0])).map(([group, layers]) => ({ group, layers }));
  }

  /** Build (or rebuild, after a language switch) the tree. */
  async render() {
    const catalog = await layerCatalog().catch(() => new Map());
    this.catalog = catalog;
    this.networks = await this.networkChoices(catalog);
    const root = el("div", { class: "tree" });
    for (const { group, layers } of this.groups()) {
      const spec0 = catalog.get(layers[0].id);
      const groupTitle = getLang() === "en" ? t(`group.${group}`) : spec0?.group_zh || t(`group.${group}`);
      const details = el("details", { open: true, class: "tree-group", dataset: { group } }, el("summary", {}, groupTitle));
      for (const item of layers) details.append(this.layerRow(item, catalog.get(item.id)));
      if (this.networks.length && layers.some((item) => this.isAllNetwork(catalog.get(item.id)))) {
        details.append(el("div", { class: "tree-subtitle" }, t("tree.networks")), this.networkList());
      }
      root.append(details);
    }
    root.append(this.basemapGroup());
    this.container.replaceChildren(root);
  }

  layerRow(item, spec) {
    const title = spec ? pick(spec, "title") : pick({ title_zh: item.meta["cim:title_zh"], title_en: item.meta["cim:title_en"] }, "title") || item.id;
    const visible = this.map.getLayoutProperty(item.styleIds[0], "visibility") !== "none";
    const box = el("input", { type: "checkbox", checked: visible, dataset: { layer: item.id },
      onchange: (e) => this.setVisible(item.id, e.target.checked) });
    const slider = el("input", { type: "range", min: 0, max: 1, step: 0.05, value: this.opacity.get(item.id) ?? 1,
      title: t("tree.opacity"), dataset: { opacity: item.id }, oninput: (e) => this.setOpacity(item.id, Number(e.target.value)) });
    return el("div", { class: "tree-layer" }, el("label", {}, box, " ", title), slider);
  }

  /** A layer of every network, coloured by network (the network switches filter it). */
  isAllNetwork(spec) {
    return spec?.style?.color_by === "network";
  }

  /** Network switches (shared by every all-network pipeline layer). */
  networkList() {
    const list = el("div", { class: "tree-networks" });
    for (const n of this.networks) {
      const sw = (key, label, color, cls) => el("label", { class: cls },
        el("input", { type: "checkbox", checked: !this.hiddenNetworks.has(key), dataset: { network: key },
          onchange: (e) => this.setNetwork(key, e.target.checked) }),
        el("span", { class: "swatch line", style: `background:${color}` }), ` ${key.split("/").pop()} ${label === key ? "" : label}`);
      list.append(sw(n.code, n.label || n.code, n.color, "net"));
      for (const s of n.subtypes) list.append(sw(`${n.code}/${s.code}`, s.label, n.color, "net sub"));
    }
    return list;
  }

  /** Networks from the all-network layer's colour table, with names from dict_network. */
  async networkChoices(catalog) {
    const spec = [...catalog.values()].find((s) => this.isAllNetwork(s));
    if (!spec) return [];
    const dict = await dictionary("dict_network");
    const name = (code) => (dict.get(code) ? pick(dict.get(code), "name") : "");
    return Object.entries(spec.style.colors || {}).map(([code, color]) => ({
      code, color, label: name(code),
      subtypes: [...dict.values()].filter((r) => r.parent_code === code && code === "PS").map((r) => ({ code: r.code, label: pick(r, "name") })),
    }));
  }

  basemapGroup() {
    const details = el("details", { open: true, class: "tree-group" }, el("summary", {}, t("tree.basemap")));
    for (const l of this.map.getStyle().layers.filter((x) => x.metadata?.["cim:basemap"] && x.type !== "background")) {
      const label = t(`tree.${l.metadata["cim:basemap"]}`);
      details.append(el("div", { class: "tree-layer" }, el("label", {},
        el("input", { type: "checkbox", checked: this.map.getLayoutProperty(l.id, "visibility") !== "none",
          onchange: (e) => this.map.setLayoutProperty(l.id, "visibility", e.target.checked ? "visible" : "none") }), " ", label),
      el("input", { type: "range", min: 0, max: 1, step: 0.05, value: this.map.getPaintProperty(l.id, "raster-opacity") ?? 1,
        oninput: (e) => this.map.setPaintProperty(l.id, "raster-opacity", Number(e.target.value)) })));
    }
    return details;
  }

  styleIdsOf(layerId) {
    return this.map.getStyle().layers.filter((l) => l.metadata?.["cim:layer"] === layerId).map((l) => l.id);
  }

  /** Show or hide every style layer of a catalogue layer. */
  setVisible(layerId, visible) {
    for (const id of this.styleIdsOf(layerId)) this.map.setLayoutProperty(id, "visibility", visible ? "visible" : "none");
  }

  /** Scale the opacity of every style layer of a catalogue layer (1 = as styled). */
  setOpacity(layerId, value) {
    this.opacity.set(layerId, value);
    for (const id of this.styleIdsOf(layerId)) {
      const orig = this.original.get(id)?.paint || {};
      for (const [prop, base] of Object.entries(orig)) {
        const v = typeof base === "number" ? base * value : value;
        this.map.setPaintProperty(id, prop, v);
      }
    }
  }

  /** Switch one network ("JS") or drainage subtype ("PS/YS") on or off on every all-network layer. */
  setNetwork(key, on) {
    if (on) this.hiddenNetworks.delete(key);
    else this.hiddenNetworks.add(key);
    const targets = [...this.catalog.values()].filter((s) => this.isAllNetwork(s));
    for (const spec of targets) for (const id of this.styleIdsOf(spec.id)) this.map.setFilter(id, this.networkFilter(this.original.get(id)?.filter));
  }

  /** The original filter combined with the network / subtype switches. */
  networkFilter(original) {
    if (!this.hiddenNetworks.size) return original ?? null;
    const shown = this.networks.map((n) => n.code).filter((c) => !this.hiddenNetworks.has(c));
    const parts = [];
    for (const code of shown) {
      const n = this.networks.find((x) => x.code === code);
      const hiddenSubs = n.subtypes.map((s) => s.code).filter((s) => this.hiddenNetworks.has(`${code}/${s}`));
      if (!hiddenSubs.length) parts.push(["==", ["get", "network"], code]);
      else parts.push(["all", ["==", ["get", "network"], code], ["!", ["in", ["coalesce", ["get", "subtype"], ""], ["literal", hiddenSubs]]]]);
    }
    const net = parts.length ? ["any", ...parts] : ["==", 1, 0];
    return original ? ["all", original, net] : net;
  }
}

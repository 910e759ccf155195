// Export the current view's features of one layer as GeoJSON: OGC API Features items with the
// view's bbox, read page by page (limit/offset, following the collection until a short page),
// saved as one FeatureCollection file.
import { getJSON, layerCatalog } from "./api.js";
import { t, pick, messageOf } from "./i18n.js";
import { el, openPanel, notify, notifyError } from "./ui.js";

const PAGE = 1000;
const MAX_FEATURES = 200000;

/** Every feature of `layer` inside bbox [w,s,e,n], reading pages of PAGE items. */
export async function fetchAll(layer, bbox, onProgress = () => {}) {
  const features = [];
  for (let offset = 0; offset < MAX_FEATURES; offset += PAGE) {
    const url = `/ogc/collections/${encodeURIComponent(layer)}/items?f=json&bbox=${bbox.map((v) => v.toFixed(7)).join(",")}&limit=${PAGE}&offset=${offset}`;
    const page = await getJSON(url, { what: "GET /ogc/collections/{id}/items" });
    const got = page?.features || [];
    features.push(...got);
    onProgress(features.length);
    const matched = page?.numberMatched;
    if (got.length < PAGE || (matched != null && features.length >= matched)) break;
  }
  return { type: "FeatureCollection", features };
}

/** Offer a JSON document as a file download. */
export function download(name, doc) {
  const blob = new Blob([JSON.stringify(doc)], { type: "application/geo+json" });
  const a = el("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

/** The export panel: choose a layer, export what the 2D view shows of it. */
export async function openExport(map, visibleLayers) {
  const catalog = await layerCatalog().catch(() => new Map());
  const visible = new Set(visibleLayers());
  const select = el("select", { id: "export-layer" }, [...catalog.values()].map((s) =>
    el("option", { value: s.id, selected: visible.has(s.id) && s.id === visibleLayers()[0] }, pick(s, "title"))));
  const status = el("p", { class: "export-status" });
  const run = async () => {
    const b = map.getBounds();
    const bbox = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()];
    button.disabled = true;
    try {
      const fc = await fetchAll(select.value, bbox, (n) => { status.textContent = t("export.progress", { n }); });
      const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "");
      download(`${select.value}_${stamp}.geojson`, fc);
      status.textContent = t("export.done", { n: fc.features.length });
      notify(t("export.done", { n: fc.features.length }), "ok");
    } catch (err) {
      status.textContent = messageOf(err);
      notifyError(err);
    } finally {
      button.disabled = false;
    }
  };
  const button = el("button", { type: "button", id: "export-run", onclick: run }, t("export.run"));
  openPanel("export", t("export.title"), el("label", {}, `${t("export.layer")} `, select), " ", button, status);
}

// Finding things: the search box (GET /api/search over the catalogue's searchable attributes:
// codes, names, addresses, survey point numbers) and the administrative-area picker (the
// admin_areas collection of /ogc). Choosing a result zooms to it and outlines it.
import { getJSON, layerCatalog } from "./api.js";
import { t, pick, onLangChange } from "./i18n.js";
import { el, bboxOf, notifyError } from "./ui.js";
import { highlight } from "./map2d.js";

/** Zoom the 2D map to a bbox [w,s,e,n] (a point-sized box gets a street-level zoom). */
export function zoomToBbox(map, bbox, maxZoom = 18) {
  const [w, s, e, n] = bbox;
  if (e - w < 1e-7 && n - s < 1e-7) map.flyTo({ center: [w, s], zoom: maxZoom, duration: 600 });
  else map.fitBounds([[w, s], [e, n]], { padding: 60, maxZoom, duration: 600 });
}

/** Outline one feature of a layer, read from OGC API Features; silent if it cannot be read. */
async function outline(map, layer, id) {
  try {
    const f = await getJSON(`/ogc/collections/${encodeURIComponent(layer)}/items/${encodeURIComponent(id)}`);
    highlight(map, [f]);
  } catch (err) {
    console.warn(err);
  }
}

/** Wire the search box (#search-input, #search-results) to the map. */
export function setupSearch(map) {
  const input = document.getElementById("search-input");
  const list = document.getElementById("search-results");
  let timer, ctrl, results = [];

  const choose = (r) => {
    list.hidden = true;
    input.value = r.label;
    zoomToBbox(map, r.bbox || [...r.center, ...r.center]);
    outline(map, r.layer, r.id);
  };

  const render = async () => {
    const catalog = await layerCatalog().catch(() => new Map());
    list.replaceChildren(...(results.length ? results.map((r) => el("li", { dataset: { layer: r.layer, id: String(r.id) }, onclick: () => choose(r) },
      el("span", { class: "result-label" }, r.label),
      el("span", { class: "result-layer" }, catalog.get(r.layer) ? pick(catalog.get(r.layer), "title") : r.layer_title_zh || r.layer)))
      : [el("li", { class: "empty" }, t("search.none"))]));
    list.hidden = false;
  };

  const run = async () => {
    const q = input.value.trim();
    if (!q) { list.hidden = true; return; }
    ctrl?.abort();
    ctrl = new AbortController();
    try {
      const res = await getJSON(`/api/search?q=${encodeURIComponent(q)}&limit=20`, { what: "GET /api/search", signal: ctrl.signal });
      results = res?.results || [];
      await render();
    } catch (err) {
      notifyError(err);
    }
  };

  input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(run, 250); });
  input.addEventListener("keydown", async (e) => {
    if (e.key === "Enter") {
      clearTimeout(timer);
      await run();
      if (results.length) choose(results[0]);
    } else if (e.key === "Escape") list.hidden = true;
  });
  document.addEventListener("click", (e) => { if (!e.target.closest("#search")) list.hidden = true; });
  onLangChange(() => { if (!list.hidden) render(); });
}

const ADMIN_PAGES = 20;

/** Every admin area (all counties of a city or province: pages followed through their "next" links). */
export async function adminAreas() {
  let url = "/ogc/collections/admin_areas/items?limit=10000";
  const out = [];
  for (let page = 0; url && page < ADMIN_PAGES; page++) {
    const fc = await getJSON(url, { what: "GET /ogc/collections/admin_areas/items" });
    out.push(...(fc?.features || []));
    const next = (fc?.links || []).find((l) => l.rel === "next");
    url = next ? new URL(next.href, window.location.href).pathname + new URL(next.href, window.location.href).search : null;
  }
  return out;
}

/** Fill the admin-area picker (#admin-picker) from /ogc and zoom to the chosen area. Areas are
 * sorted by code, so each county's streets and communities follow their county, county after county. */
export async function setupAdminPicker(map) {
  const select = document.getElementById("admin-picker");
  let features = [];
  try {
    features = (await adminAreas()).sort((a, b) => String(a.properties.code).localeCompare(String(b.properties.code)));
  } catch (err) {
    notifyError(err);
    return;
  }
  const indent = { province: 0, city: 1, county: 2, street: 3, community: 4 };
  for (const f of features) {
    const depth = indent[f.properties.level] ?? 0;
    select.append(el("option", { value: String(f.id), dataset: { code: String(f.properties.code) } }, `${"\u3000".repeat(depth)}${f.properties.name}（${f.properties.code}）`));
  }
  select.addEventListener("change", () => {
    const f = features.find((x) => String(x.id) === select.value);
    if (!f?.geometry) return;
    zoomToBbox(map, f.bbox || bboxOf(f.geometry), 17);
    highlight(map, [f]);
  });
}

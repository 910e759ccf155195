// Area statistics: sketch a polygon (or take the chosen admin area) and show what lies inside
// it, from POST /api/query/stats: feature counts per layer, pipe length by network, material and
// diameter class, green area by class and building floor area by use.
import { postJSON, layerCatalog, dictionary } from "../api.js";
import { t, pick, messageOf } from "../i18n.js";
import { el, fmt, fmtArea, fmtLength, openPanel, notifyError } from "../ui.js";

async function named(table, code) {
  if (!table) return code;
  const row = (await dictionary(table)).get(String(code));
  return row ? `${pick(row, "name")}（${code}）` : code;
}

async function breakdown(title, values, table, unit) {
  const entries = Object.entries(values || {}).sort((a, b) => b[1] - a[1]);
  if (!entries.length) return null;
  const rows = [];
  for (const [k, v] of entries) rows.push(el("tr", {}, el("th", {}, await named(table, k)), el("td", {}, unit(v))));
  return el("section", {}, el("h3", {}, title), el("table", { class: "kv stats" }, el("tbody", {}, rows)));
}

/** Render a stats response into panel content. */
export async function renderStats(res) {
  const catalog = await layerCatalog().catch(() => new Map());
  const counts = Object.entries(res.counts || {}).map(([layer, n]) =>
    el("tr", {}, el("th", {}, catalog.get(layer) ? pick(catalog.get(layer), "title") : layer), el("td", {}, fmt(n, 0))));
  const pipes = res.pipe_length_m || {};
  const parts = [
    el("p", { class: "stats-area" }, `${t("stats.area")}：${fmtArea(res.area_m2 || 0)}`),
    el("section", {}, el("h3", {}, t("stats.counts")), el("table", { class: "kv stats", id: "stats-counts" }, el("tbody", {}, counts))),
    await breakdown(t("stats.byNetwork"), pipes.by_network, "dict_network", fmtLength),
    await breakdown(t("stats.byMaterial"), pipes.by_material, "dict_material", fmtLength),
    await breakdown(t("stats.byDiameter"), pipes.by_diameter_class, null, fmtLength),
    await breakdown(t("stats.green"), res.green_area_m2?.by_class, "dict_green_class", fmtArea),
    await breakdown(t("stats.buildings"), res.building_area_m2?.by_use, "dict_building_use", (v) => `${fmt(v, 1)} ${t("units.m2")}`),
  ];
  return parts.filter(Boolean);
}

/** Query statistics for a polygon geometry or an admin code and show them in the panel. */
export async function showStats(request) {
  openPanel("stats", t("stats.title"), el("p", {}, "…"));
  try {
    const res = await postJSON("/api/query/stats", request, { what: "POST /api/query/stats" });
    openPanel("stats", t("stats.title"), ...(await renderStats(res)));
  } catch (err) {
    openPanel("stats", t("stats.title"), el("p", { class: "error" }, messageOf(err)));
    notifyError(err);
  }
}

/** The statistics tool: sketch a polygon (or take the admin area chosen in the picker), then query. */
export async function statsTool(draw) {
  const picker = document.getElementById("admin-picker");
  const chosen = picker?.selectedOptions[0];
  const byArea = chosen?.dataset.code
    ? el("button", { type: "button", id: "stats-admin", onclick: () => { draw.cancel(); showStats({ admin_code: chosen.dataset.code }); } },
      t("stats.byAdmin", { name: chosen.textContent.trim() }))
    : null;
  openPanel("stats", t("stats.title"), el("p", {}, t("tool.hint.polygon")), byArea);
  const geometry = await draw.start("polygon");
  if (geometry) await showStats({ geometry });
}

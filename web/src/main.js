// Entry point: builds the 2D map and wires every feature module to the page. The modules talk
// to the API only through api.js; `window.cim` exposes the map objects for debugging and for
// the browser tests.
import { applyStatic, setLang, getLang, t, onLangChange } from "./i18n.js";
import { createMap, syncSize, BASEMAP_KEY, GK_KEY } from "./map2d.js";
import { LayerTree } from "./layertree.js";
import { Legend } from "./legend.js";
import { Identify } from "./identify.js";
import { setupSearch, setupAdminPicker } from "./search.js";
import { Draw } from "./tools/draw.js";
import { measure } from "./tools/measure.js";
import { statsTool } from "./tools/stats.js";
import { sectionTool } from "./tools/section.js";
import { openExport } from "./export.js";
import { View3D } from "./map3d.js";
import { UploadPanel } from "./upload.js";
import { TiersPanel } from "./tiers.js";
import { setupHazards } from "./hazards/panel.js";
import { HealthCheckPanel } from "./healthcheck/panel.js";
import { el, openPanel, closePanel, notify, onPanelLayout } from "./ui.js";

/** Catalogue layer ids currently switched on in the 2D map. */
function visibleLayers(map) {
  const ids = new Set();
  for (const l of map.getStyle().layers) {
    const id = l.metadata?.["cim:layer"];
    if (id && map.getLayoutProperty(l.id, "visibility") !== "none") ids.add(id);
  }
  return [...ids];
}

/** Tool buttons: one active tool at a time; identify is the resting state. */
function setupTools(map, identify, draw) {
  const buttons = [...document.querySelectorAll("#tools [data-tool]")];
  let current = 0; // activation counter: only the latest tool returns the map to identify
  const activate = async (name) => {
    const mine = ++current;
    for (const b of buttons) b.classList.toggle("active", b.dataset.tool === name);
    draw.cancel();
    identify.enabled = name === "identify";
    if (name === "identify") { draw.clear(); return; }
    draw.clear();
    if (name === "distance" || name === "area") await measure(draw, name);
    else if (name === "stats") await statsTool(draw);
    else if (name === "section") await sectionTool(draw);
    if (mine !== current) return; // another tool took over meanwhile
    for (const b of buttons) b.classList.toggle("active", b.dataset.tool === "identify");
    // Let the finishing double-click pass before identify listens again.
    setTimeout(() => { if (mine === current) identify.enabled = true; }, 300);
  };
  for (const b of buttons) b.addEventListener("click", () => activate(b.dataset.tool));
}

function openSettings() {
  const url = el("input", { type: "url", id: "settings-basemap", value: localStorage.getItem(BASEMAP_KEY) || "", size: 40 });
  const gk = el("input", { type: "checkbox", id: "settings-gk", checked: localStorage.getItem(GK_KEY) !== "0" });
  const save = () => {
    const value = url.value.trim();
    if (value) localStorage.setItem(BASEMAP_KEY, value);
    else localStorage.removeItem(BASEMAP_KEY);
    localStorage.setItem(GK_KEY, gk.checked ? "1" : "0");
    notify(t("settings.saved"), "ok");
    window.location.reload();
  };
  openPanel("settings", t("settings.open"), el("label", {}, t("settings.basemap"), url),
    el("label", {}, gk, " ", t("settings.gk")), el("button", { type: "button", onclick: save }, t("settings.save")));
}

/** 2D ↔ 3D switch keeping the view. */
function setupViewSwitch(map) {
  const view3d = new View3D();
  const btn = document.getElementById("btn-3d");
  const mapDiv = document.getElementById("map"), globeDiv = document.getElementById("globe");
  const bar = document.getElementById("underground-bar");
  const under = document.getElementById("underground"), alpha = document.getElementById("globe-alpha");
  let in3d = false;
  const label = () => { btn.textContent = t(in3d ? "view.to2d" : "view.to3d"); };
  btn.addEventListener("click", async () => {
    const height = (in3d ? globeDiv : mapDiv).clientHeight;
    if (!in3d) {
      const view = { center: map.getCenter().toArray(), zoom: map.getZoom(), bearing: map.getBearing(), pitch: map.getPitch() };
      globeDiv.hidden = false; mapDiv.hidden = true; bar.hidden = false;
      in3d = true; label();
      btn.disabled = true;
      notify(t("view.loading3d"), "info", 2500);
      try {
        view3d.syncVisibility(visibleLayers(map));
        await view3d.open(view, globeDiv.clientHeight || height);
      } catch (err) {
        notify(String(err.message || err), "error");
      } finally {
        btn.disabled = false;
      }
    } else {
      const view = view3d.getView(height);
      globeDiv.hidden = true; mapDiv.hidden = false; bar.hidden = true;
      in3d = false; label();
      map.resize();
      map.jumpTo(view);
    }
  });
  const apply = () => view3d.setUnderground(under.checked, Number(alpha.value));
  under.addEventListener("change", apply);
  alpha.addEventListener("input", apply);
  onLangChange(label);
  return view3d;
}

async function main() {
  applyStatic();
  const langBtn = document.getElementById("btn-lang");
  const langLabel = () => { langBtn.textContent = getLang() === "en" ? "中文" : "English"; };
  langLabel();
  langBtn.addEventListener("click", () => { setLang(getLang() === "en" ? "zh" : "en"); langLabel(); });
  document.getElementById("panel-close").addEventListener("click", () => closePanel());

  const { map, ready, styleOk } = await createMap();
  window.cim = { map, ready, styleOk };
  onPanelLayout(() => syncSize(map));
  await ready;
  const tree = new LayerTree(map, document.getElementById("layertree"));
  const legend = new Legend(map, document.getElementById("legend"));
  const identify = new Identify(map, () => visibleLayers(map));
  const draw = new Draw(map);
  setupTools(map, identify, draw);
  setupSearch(map);
  document.getElementById("btn-export").addEventListener("click", () => openExport(map, () => visibleLayers(map)));
  document.getElementById("btn-settings").addEventListener("click", openSettings);
  const upload = new UploadPanel(map);
  document.getElementById("btn-upload").addEventListener("click", () => upload.open());
  const tiers = new TiersPanel(map);
  document.getElementById("btn-tiers").addEventListener("click", () => tiers.open());
  const hazards = setupHazards(map, { tree, identify });
  const healthcheck = new HealthCheckPanel(map, identify);
  document.getElementById("btn-healthcheck").addEventListener("click", () => healthcheck.open());
  const view3d = setupViewSwitch(map);
  window.addEventListener("cim:data-changed", () => {
    for (const [id, src] of Object.entries(map.getStyle().sources)) if (src.type === "vector" && src.url) map.getSource(id).setUrl(src.url);
  });
  Object.assign(window.cim, { tree, legend, identify, draw, upload, hazards, view3d, tiers, healthcheck });
  await Promise.all([tree.render(), legend.render(), setupAdminPicker(map)]);
  document.body.dataset.ready = "true";
}

main().catch((err) => {
  console.error(err);
  notify(String(err?.message || err), "error", 0);
});

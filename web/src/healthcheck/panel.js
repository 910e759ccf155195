// 城市体检 panel: choose a finished run, an admin level and an indicator; the admin areas of that
// level are coloured by the class the run stored for each value (threshold classes: passing,
// failing, no threshold; not computed in grey), with a legend, a ranked table (against last year
// or any other run), a bar chart per area and the trend over the runs (ECharts, loaded when the
// panel first draws a chart). Clicking an area (map or table) lists its values against the
// thresholds and last year; "要素" shows the buildings, pipes or lights behind a value on the map.
// Talks to /api/healthcheck/* and /ogc/collections/admin_areas/items only (docs/api-contract.md).
import { getJSON } from "../api.js";
import { getLang, onLangChange } from "../i18n.js";
import { el, fmt, openPanel, closePanel, notify, notifyError, bboxOf } from "../ui.js";
import { highlight } from "../map2d.js";
import { adminAreas, zoomToBbox } from "../search.js";

const OWNER = "healthcheck";
const SRC = "hc-areas";
const NOT_COMPUTED = "#cfcfcf";
const LEVELS = ["county", "street", "community"];

const TEXT = {
  open: ["城市体检", "Health check"],
  title: ["城市体检", "Urban health check"],
  run: ["体检运行", "Run"],
  level: ["层级", "Level"],
  indicator: ["指标", "Indicator"],
  compareWith: ["对比运行", "Compare with"],
  noCompare: ["（上一年度）", "(previous year)"],
  none: ["尚无完成的体检运行：请运行 cim healthcheck run 或 POST /api/healthcheck/runs",
    "No finished run yet: run `cim healthcheck run` or POST /api/healthcheck/runs"],
  legend: ["图例", "Legend"],
  notComputed: ["未计算", "not computed"],
  chart: ["各区域指标值", "Value per area"],
  trend: ["历年变化", "Trend over the runs"],
  table: ["排名", "Ranking"],
  rank: ["名次", "#"],
  area: ["区域", "Area"],
  value: ["指标值", "Value"],
  state: ["判定", "Verdict"],
  previous: ["对比值", "Earlier"],
  change: ["变化", "Change"],
  pass: ["达标", "meets target"],
  fail: ["不达标", "fails target"],
  noThreshold: ["无阈值", "no threshold"],
  detail: ["区域详情", "Area details"],
  threshold: ["阈值", "Threshold"],
  features: ["要素", "Features"],
  showFeatures: ["在地图上显示", "Show on the map"],
  featuresShown: ["已在地图上显示 {n} 个要素（{layer}）", "{n} features shown on the map ({layer})"],
  report: ["体检报告", "Report"],
  county: ["区县", "county"],
  street: ["街道", "street"],
  community: ["社区", "community"],
  improved: ["改善", "improved"],
  worsened: ["变差", "worsened"],
  unchanged: ["持平", "unchanged"],
  new: ["新增", "new"],
  not_comparable: ["不可比", "not comparable"],
  source: ["依据", "Source"],
};

/** Text in the current language, {name} filled from vars. */
export function tr(key, vars = {}) {
  const pair = TEXT[key];
  let s = pair ? pair[getLang() === "en" ? 1 : 0] : key;
  for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}

const name = (obj, base = "name") => (obj ? (getLang() === "en" ? obj[`${base}_en`] : obj[`${base}_zh`]) || obj[`${base}_zh`] || "" : "");

/** The verdict of a value: pass / fail / none (no threshold) / nc (not computed). */
export function verdict(v) {
  if (!v || v.state !== "computed") return "nc";
  if (v.pass === true) return "pass";
  if (v.pass === false) return "fail";
  return "none";
}

function verdictText(v) {
  return { pass: tr("pass"), fail: tr("fail"), none: tr("noThreshold"), nc: tr("notComputed") }[verdict(v)];
}

function valueText(v, unit) {
  if (!v || v.state !== "computed" || v.value === null) return name(v, "reason") || tr("notComputed");
  return `${fmt(v.value, 2)}${unit ? ` ${unit}` : ""}`;
}

function thresholdText(def, v) {
  const op = v?.op || def?.threshold?.op;
  const t = v?.threshold ?? def?.threshold?.value;
  return op && t !== null && t !== undefined ? `${op} ${fmt(t, 2)}` : tr("noThreshold");
}

/** The health-check panel of the 2D map. */
export class HealthCheckPanel {
  constructor(map, identify) {
    this.map = map;
    this.identify = identify;
    this.runs = [];
    this.values = new Map();          // run id → values answer
    this.areas = null;                // code → admin area feature
    this.charts = null;               // the lazily loaded chart module
    this.state = { run: null, level: null, indicator: null, other: "", area: null };
    this.drawn = 0;                   // counts renders and trend requests: an older one drops its answer
    map.on("click", SRC + "-fill", (e) => {
      const code = e.features?.[0]?.properties?.code;
      if (code && this.isOpen()) this.selectArea(code);
    });
    map.on("mouseenter", SRC + "-fill", () => { if (this.isOpen()) map.getCanvas().style.cursor = "pointer"; });
    map.on("mouseleave", SRC + "-fill", () => { map.getCanvas().style.cursor = ""; });
    onLangChange(() => { if (this.isOpen()) this.render(); });
    injectStyle();
  }

  isOpen() {
    const panel = document.getElementById("panel");
    return !panel.hidden && panel.dataset.owner === OWNER;
  }

  /** Open the panel: the finished runs, newest first, the latest chosen. */
  async open() {
    this.body = openPanel(OWNER, tr("title"), el("div", { class: "hc-loading" }, "…"));
    this.identify.enabled = false;
    this.watchClose();
    try {
      this.runs = await getJSON("/api/healthcheck/runs?state=done&limit=100", { what: "GET /api/healthcheck/runs" });
      if (!this.runs.length) {
        this.body.replaceChildren(el("p", { class: "hc-empty" }, tr("none")));
        return;
      }
      if (!this.runs.some((r) => r.id === this.state.run)) this.state.run = this.runs[0].id;
      await this.loadRun();
    } catch (err) {
      notifyError(err);
      this.body.replaceChildren(el("p", { class: "error" }, String(err.message_zh || err.message || err)));
    }
  }

  /** Give identify back and drop the choropleth when another owner takes the panel or it closes. */
  watchClose() {
    this.closeWatch?.disconnect();
    const panel = document.getElementById("panel");
    this.closeWatch = new MutationObserver(() => {
      if (this.isOpen()) return;
      this.closeWatch.disconnect();
      this.identify.enabled = true;
      this.setLayerVisible(false);
    });
    this.closeWatch.observe(panel, { attributes: true, attributeFilter: ["hidden", "data-owner"] });
  }

  close() {
    closePanel(OWNER);
  }

  async loadRun() {
    const id = this.state.run;
    if (!this.values.has(id)) {
      this.values.set(id, await getJSON(`/api/healthcheck/runs/${id}`, { what: "GET /api/healthcheck/runs/{id}" }));
    }
    const answer = this.values.get(id);
    const levels = LEVELS.filter((l) => answer.run.levels.includes(l));
    if (!levels.includes(this.state.level)) this.state.level = levels.includes("street") ? "street" : levels[0];
    const ids = Object.keys(answer.run.catalogue || {});
    if (!ids.includes(this.state.indicator)) this.state.indicator = ids[0];
    if (!this.areas) await this.loadAreas();
    this.render();
  }

  async loadAreas() {
    this.areas = new Map((await adminAreas()).map((f) => [String(f.properties.code), f]));
  }

  /** The values of the chosen run, level and indicator. */
  current() {
    const answer = this.values.get(this.state.run);
    const def = answer.run.catalogue[this.state.indicator];
    const rows = answer.values.filter((v) => v.indicator === this.state.indicator && v.area_level === this.state.level);
    const classes = answer.run.classes?.[this.state.indicator]?.[this.state.level] || null;
    return { answer, def, rows, classes };
  }

  /** Rows ranked best first by the indicator's direction; not computed last. */
  ranked(rows, def) {
    const sign = def?.direction === "lower" ? 1 : -1;
    return [...rows].sort((a, b) => {
      const av = a.state === "computed" && a.value !== null, bv = b.state === "computed" && b.value !== null;
      if (av !== bv) return av ? -1 : 1;
      if (!av) return String(a.area_code).localeCompare(String(b.area_code));
      return sign * (a.value - b.value) || String(a.area_code).localeCompare(String(b.area_code));
    });
  }

  render() {
    const generation = ++this.drawn;
    const { answer, def, rows, classes } = this.current();
    const run = answer.run;
    const controls = this.controls(answer);
    const legend = this.legend(def, classes, rows);
    const table = el("div", { class: "hc-table-box" });
    const detail = el("div", { id: "hc-detail" });
    const report = el("div", { class: "hc-report" }, `${tr("report")}：`,
      el("a", { id: "hc-report-xlsx", href: `/api/healthcheck/runs/${run.id}/report.xlsx`, download: `体检报告-${run.id}.xlsx` }, "Excel"),
      " · ",
      el("a", { id: "hc-report-html", href: `/api/healthcheck/runs/${run.id}/report.html`, target: "_blank", rel: "noopener" }, "HTML"));
    const about = el("p", { class: "hc-about" }, name(def, "definition") || def?.definition || "",
      def?.threshold?.source ? el("span", { class: "hc-source" }, ` ${tr("source")}：${def.threshold.source}`) : null);
    this.body.replaceChildren(controls, about, legend,
      el("h3", {}, tr("chart")), el("div", { id: "hc-chart", class: "hc-chart" }),
      el("h3", {}, tr("trend")), el("div", { id: "hc-trend", class: "hc-chart" }),
      el("h3", {}, tr("table")), table, detail, report);
    this.drawMap(rows);
    this.renderTable(table, def, rows);
    this.drawCharts(def, rows, generation);
    if (this.state.area && rows.some((r) => r.area_code === this.state.area)) this.selectArea(this.state.area, false);
    else this.state.area = null;
    this.body.dataset.ready = `${run.id}:${this.state.level}:${this.state.indicator}`;
  }

  controls(answer) {
    const run = answer.run;
    const runSel = el("select", { id: "hc-run" }, this.runs.map((r) => el("option", { value: r.id, selected: r.id === run.id },
      `${r.year} · #${r.id} · ${(r.counties || []).join(",")}`)));
    runSel.addEventListener("change", () => { this.state.run = Number(runSel.value); this.state.other = ""; this.loadRun().catch(notifyError); });
    const levelSel = el("select", { id: "hc-level" }, LEVELS.filter((l) => run.levels.includes(l))
      .map((l) => el("option", { value: l, selected: l === this.state.level }, tr(l))));
    levelSel.addEventListener("change", () => { this.state.level = levelSel.value; this.render(); });
    const groups = new Map();
    for (const [id, d] of Object.entries(run.catalogue)) {
      const g = d.level || "";
      if (!groups.has(g)) groups.set(g, []);
      groups.get(g).push(el("option", { value: id, selected: id === this.state.indicator }, name(d) || id));
    }
    const indSel = el("select", { id: "hc-indicator" }, [...groups].map(([g, opts]) => el("optgroup", { label: g }, opts)));
    indSel.addEventListener("change", () => { this.state.indicator = indSel.value; this.render(); });
    const others = this.runs.filter((r) => r.id !== run.id && (r.counties || []).some((c) => (run.counties || []).includes(c)));
    const otherSel = el("select", { id: "hc-compare" }, el("option", { value: "" }, tr("noCompare")),
      others.map((r) => el("option", { value: r.id, selected: String(r.id) === String(this.state.other) }, `${r.year} · #${r.id}`)));
    otherSel.addEventListener("change", () => { this.state.other = otherSel.value; this.render(); });
    return el("div", { class: "hc-controls" },
      el("label", {}, tr("run"), runSel), el("label", {}, tr("level"), levelSel),
      el("label", {}, tr("indicator"), indSel), el("label", {}, tr("compareWith"), otherSel));
  }

  legend(def, classes, rows) {
    const box = el("div", { id: "hc-legend", class: "hc-legend" }, el("div", { class: "legend-title" },
      `${tr("legend")}：${name(def)}${def?.unit ? `（${def.unit}）` : ""} · ${tr("threshold")} ${thresholdText(def, rows.find((r) => r.op))}`));
    for (const c of classes?.classes || []) {
      box.append(el("div", { class: "legend-item", dataset: { color: c.color, pass: String(c.pass) } },
        el("span", { class: "swatch fill", style: `background:${c.color}` }), " ", name(c, "label")));
    }
    if (rows.some((r) => r.state !== "computed")) {
      box.append(el("div", { class: "legend-item", dataset: { color: NOT_COMPUTED } },
        el("span", { class: "swatch fill hc-nc", style: `background:${NOT_COMPUTED}` }), " ", tr("notComputed")));
    }
    return box;
  }

  /** The choropleth: each area of the level with its stored class colour. */
  drawMap(rows) {
    const features = [];
    for (const v of rows) {
      const area = this.areas.get(String(v.area_code));
      if (!area?.geometry) continue;
      features.push({ type: "Feature", id: area.id, geometry: area.geometry, properties: {
        code: v.area_code, name: v.area_name, value: v.value, verdict: verdict(v),
        color: v.state === "computed" && v.color ? v.color : NOT_COMPUTED } });
    }
    const data = { type: "FeatureCollection", features };
    const src = this.map.getSource(SRC);
    if (src) src.setData(data);
    else {
      this.map.addSource(SRC, { type: "geojson", data });
      this.map.addLayer({ id: SRC + "-fill", type: "fill", source: SRC,
        paint: { "fill-color": ["get", "color"], "fill-opacity": 0.65 } });
      this.map.addLayer({ id: SRC + "-line", type: "line", source: SRC,
        paint: { "line-color": "#555", "line-width": ["case", ["boolean", ["feature-state", "selected"], false], 3.5, 1] } });
      this.map.addLayer({ id: SRC + "-label", type: "symbol", source: SRC,
        layout: { "text-field": ["get", "name"], "text-size": 12 }, paint: { "text-color": "#222", "text-halo-color": "#fff", "text-halo-width": 1.2 } });
    }
    this.setLayerVisible(true);
    if (features.length && !this.fitted) {
      const box = features.map((f) => bboxOf(f.geometry)).reduce((a, b) => [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[2], b[2]), Math.max(a[3], b[3])]);
      zoomToBbox(this.map, box, 15);
      this.fitted = true;
    }
  }

  setLayerVisible(on) {
    for (const id of [SRC + "-fill", SRC + "-line", SRC + "-label"]) {
      if (this.map.getLayer(id)) this.map.setLayoutProperty(id, "visibility", on ? "visible" : "none");
    }
  }

  async renderTable(box, def, rows) {
    let earlier = new Map();
    try {
      const other = this.state.other ? `&with=${encodeURIComponent(this.state.other)}` : "";
      const cmp = await getJSON(`/api/healthcheck/runs/${this.state.run}/compare?level=${this.state.level}&indicator=${encodeURIComponent(this.state.indicator)}${other}`,
        { what: "GET /api/healthcheck/runs/{id}/compare" });
      earlier = new Map(cmp.rows.map((r) => [r.area_code, r]));
      box.dataset.compareRun = cmp.previous_run_id ?? "";
    } catch (err) {
      notifyError(err);
    }
    const body = el("tbody");
    this.ranked(rows, def).forEach((v, i) => {
      const c = earlier.get(v.area_code);
      const tr_ = el("tr", { class: `zoomable hc-${verdict(v)}`, dataset: { code: v.area_code } },
        el("td", {}, v.state === "computed" ? String(i + 1) : ""), el("td", {}, v.area_name || v.area_code),
        el("td", { class: "num" }, valueText(v, def?.unit)), el("td", {}, verdictText(v)),
        el("td", { class: "num" }, c && c.previous_value !== null ? fmt(c.previous_value, 2) : ""),
        el("td", { class: `num hc-trend-${c?.trend || ""}` }, c?.change !== null && c?.change !== undefined ? `${c.change > 0 ? "+" : ""}${fmt(c.change, 2)} ${tr(c.trend)}` : (c?.trend ? tr(c.trend) : "")));
      tr_.addEventListener("click", () => this.selectArea(v.area_code));
      body.append(tr_);
    });
    box.replaceChildren(el("table", { id: "hc-table", class: "findings hc-table" },
      el("thead", {}, el("tr", {}, [tr("rank"), tr("area"), tr("value"), tr("state"), tr("previous"), tr("change")].map((h) => el("th", {}, h)))), body));
  }

  async drawCharts(def, rows, generation) {
    try {
      this.charts = this.charts || await import("./charts.js");
      if (generation !== this.drawn) return;      // a newer render has drawn (or will draw) its own
      const ranked = this.ranked(rows, def).filter((v) => v.state === "computed" && v.value !== null);
      this.charts.bar(document.getElementById("hc-chart"), ranked, def, (code) => this.selectArea(code));
      await this.drawTrend(def);
    } catch (err) {
      notifyError(err);
    }
  }

  /** Values of the chosen indicator for the selected area (or every area of the level) per run year. */
  async drawTrend(def) {
    const node = document.getElementById("hc-trend");
    if (!node) return;
    const generation = ++this.drawn;
    const run = this.values.get(this.state.run).run;
    const same = this.runs.filter((r) => (r.counties || []).some((c) => (run.counties || []).includes(c)) && r.levels.includes(this.state.level));
    const byYear = new Map();
    for (const r of same) if (!byYear.has(r.year)) byYear.set(r.year, r);   // newest run of each year
    const picked = [...byYear.values()].sort((a, b) => a.year - b.year).slice(-10);
    const area = this.state.area ? `&area=${this.state.area}` : "";
    const series = new Map();
    const answers = await Promise.all(picked.map((r) => getJSON(
      `/api/healthcheck/runs/${r.id}?level=${this.state.level}&indicator=${encodeURIComponent(this.state.indicator)}&previous=false${area}`,
      { what: "GET /api/healthcheck/runs/{id}" })));
    picked.forEach((r, i) => {
      for (const v of answers[i].values) {
        if (!series.has(v.area_code)) series.set(v.area_code, { name: v.area_name || v.area_code, points: new Map() });
        series.get(v.area_code).points.set(r.year, v.state === "computed" ? v.value : null);
      }
    });
    if (generation !== this.drawn) return;      // a newer render or trend request took over
    this.charts.trend(node, picked.map((r) => r.year), [...series.values()].slice(0, 12), def);
  }

  /** One area: its values of every indicator against the thresholds and last year. */
  async selectArea(code, redrawTrend = true) {
    this.state.area = code;
    const { answer, def } = this.current();
    const area = this.areas.get(String(code));
    if (area?.id !== undefined && this.map.getSource(SRC)) {
      this.map.removeFeatureState({ source: SRC });
      this.map.setFeatureState({ source: SRC, id: area.id }, { selected: true });
    }
    for (const row of this.body.querySelectorAll("#hc-table tbody tr")) row.classList.toggle("selected", row.dataset.code === code);
    const mine = answer.values.filter((v) => v.area_code === code);
    const chosen = mine.find((v) => v.indicator === this.state.indicator);
    const rows = mine.map((v) => {
      const d = answer.run.catalogue[v.indicator];
      return el("tr", { class: `hc-${verdict(v)}${v.indicator === this.state.indicator ? " chosen" : ""}`, dataset: { indicator: v.indicator } },
        el("td", {}, name(d) || v.indicator), el("td", { class: "num" }, valueText(v, d?.unit)),
        el("td", {}, thresholdText(d, v)), el("td", {}, verdictText(v)),
        el("td", { class: "num" }, v.previous && v.previous.value !== null ? fmt(v.previous.value, 2) : ""));
    });
    const featuresBtn = def?.layer && chosen?.state === "computed"
      ? el("button", { type: "button", id: "hc-show-features", onclick: () => this.showFeatures(code) }, `${tr("features")}：${tr("showFeatures")}`)
      : null;
    const box = this.body.querySelector("#hc-detail");
    if (!box) return;
    box.replaceChildren(
      el("h3", {}, `${tr("detail")}：${chosen?.area_name || area?.properties?.name || code}（${code}）`),
      el("div", { id: "hc-area-value", class: `hc-big hc-${verdict(chosen)}` }, `${name(def)}：${valueText(chosen, def?.unit)} · ${verdictText(chosen)}`),
      featuresBtn, el("div", { id: "hc-features" }),
      el("table", { class: "findings hc-area-table" }, el("thead", {}, el("tr", {},
        [tr("indicator"), tr("value"), tr("threshold"), tr("state"), answer.previous_run_id ? `${tr("previous")}` : ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)));
    if (redrawTrend && this.charts) this.drawTrend(def).catch(notifyError);
  }

  /** The features behind the chosen value: highlighted on the map and listed. */
  async showFeatures(code) {
    const box = this.body.querySelector("#hc-features");
    try {
      const res = await getJSON(`/api/healthcheck/runs/${this.state.run}/features?indicator=${encodeURIComponent(this.state.indicator)}&area=${code}&limit=2000`,
        { what: "GET /api/healthcheck/runs/{id}/features" });
      const feats = res.features?.features || res.features || [];
      highlight(this.map, feats);
      if (feats.length) {
        const box_ = feats.map((f) => bboxOf(f.geometry)).reduce((a, b) => [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[2], b[2]), Math.max(a[3], b[3])]);
        zoomToBbox(this.map, box_, 18);
      }
      const msg = tr("featuresShown", { n: res.ids?.length ?? feats.length, layer: res.layer });
      box.replaceChildren(el("p", { id: "hc-features-count", dataset: { n: String(res.ids?.length ?? feats.length) } }, msg),
        res.data_changed ? el("p", { class: "error" }, getLang() === "en" ? "The data changed since this run." : "该运行之后数据已变化。") : null,
        el("ul", { class: "hc-feature-list" }, feats.slice(0, 50).map((f) => el("li", {}, String(f.properties?.code || f.properties?.name || f.id)))));
      notify(msg, "ok", 3000);
    } catch (err) {
      notifyError(err);
    }
  }
}

let styled = false;
function injectStyle() {
  if (styled) return;
  styled = true;
  document.head.append(el("style", {}, `
#panel[data-owner="healthcheck"] { width: 520px; }
.hc-controls { display: grid; grid-template-columns: 1fr 1fr; gap: 0 10px; }
.hc-about { color: #555; font-size: 12px; margin: 4px 0; }
.hc-legend { margin: 6px 0; }
.hc-chart { width: 100%; height: 220px; }
table.hc-table td.num, table.hc-area-table td.num { text-align: right; white-space: nowrap; }
tr.hc-fail td:nth-child(4), .hc-big.hc-fail { color: #b00020; }
tr.hc-pass td:nth-child(4), .hc-big.hc-pass { color: #19733a; }
tr.hc-nc td { color: #888; }
tr.selected { background: #dbe9f7; }
tr.chosen { font-weight: bold; }
.hc-big { font-size: 14px; margin: 4px 0 8px; }
.hc-report { margin-top: 10px; }
.hc-trend-improved { color: #19733a; } .hc-trend-worsened { color: #b00020; }
`));
}

export { LEVELS };

// County upload: with an uploader token (kept in sessionStorage, sent as Bearer), choose the
// delivery's files, pick a survey profile or let the server detect it, upload as a dry run
// (POST /api/ingest, dry_run=true), follow the job (GET /api/ingest/{job}), then read the report
// as the server grouped it (GET /api/ingest/{job}/groups, a page at a time: the verdict, what to
// fix first, findings grouped by rule × layer × field × value with their count, first rows and
// extent, biggest first; a group with an extent zooms the map to it). The full list of findings
// is never fetched here: the JSON, CSV, HTML and XLSX reports are offered as links. Then confirm
// or cancel the load. The mapping step: after a dry run, each layer's mapping (delivered field →
// target column, how it was decided, confidence, samples) and its value mappings are shown as a
// table; the user changes a target (or sets a field to "not mapped"), or a value's code,
// re-checks the stored files with that mapping (POST /api/ingest/{job}/recheck) and confirms;
// confirming saves the mapping as the county's (server side).
import { getJSON, postJSON, postForm, getToken, setToken } from "./api.js";
import { t, pick, messageOf, getLang } from "./i18n.js";
import { el, openPanel, notify, notifyError, fmt } from "./ui.js";
import { highlight } from "./map2d.js";

const COUNTY_KEY = "cim.county";
const FINAL = new Set(["done", "rejected", "failed", "cancelled"]);
const GROUPS_PAGE = 50;          // groups fetched per page
const REPORT_WAIT_MS = 15_000;   // a finished job's reports are written just after its state: wait for them
const RECHECKABLE = new Set(["awaiting_confirmation", "rejected"]);

/** The user's mapping read back from the mapping tables of the report panel:
 *  {fields: {source: column}, values: {column: {value: code}}}. A field goes in when its
 *  target was proposed, given by the user, or changed here; a field set to "not mapped" (its
 *  profile alias or proposal refused, or kept so by the user) goes in with an empty column; a
 *  value mapping when it is ticked and has a code. A field delivered in several layers goes in
 *  per layer, as LAYER::FIELD. */
export function collectMapping(root) {
  const fields = {};
  const values = {};
  const picked = [];
  for (const sel of root.querySelectorAll("select.map-target")) {
    const { source, how, original } = sel.dataset;
    const layer = sel.closest("table.mapping")?.dataset.layer || "";
    const changed = sel.value !== original;
    if (sel.value && (how === "proposed" || how === "user" || changed)) picked.push([layer, source, sel.value]);
    else if (!sel.value && (changed || how === "user")) picked.push([layer, source, ""]);
  }
  // a field delivered in several layers is mapped per layer (LAYER::FIELD), else by its name
  const layersOf = {};
  for (const sel of root.querySelectorAll("select.map-target")) {
    (layersOf[sel.dataset.source] ??= new Set()).add(sel.closest("table.mapping")?.dataset.layer || "");
  }
  for (const [layer, source, column] of picked) fields[layersOf[source].size > 1 ? `${layer}::${source}` : source] = column;
  for (const row of root.querySelectorAll("tr.map-value")) {
    const on = row.querySelector("input.map-value-on");
    const column = row.querySelector(".map-value-column")?.value?.trim();
    const value = row.querySelector(".map-value-value")?.value?.trim();
    const code = row.querySelector("input.map-value-code")?.value?.trim();
    if (on?.checked && column && value && code) (values[column] ??= {})[value] = code;
  }
  return { fields, values };
}

/** The upload panel controller. */
export class UploadPanel {
  constructor(map) {
    this.map = map;
    this.job = null;
  }

  async open() {
    const token = el("input", { type: "password", id: "upload-token", value: getToken() || "", autocomplete: "off" });
    const county = el("input", { type: "text", id: "upload-county", value: sessionStorage.getItem(COUNTY_KEY) || "", pattern: "\\d{6,12}", size: 12 });
    const files = el("input", { type: "file", id: "upload-files", multiple: true });
    const profile = el("select", { id: "upload-profile" }, el("option", { value: "" }, t("upload.auto")));
    const start = el("button", { type: "button", id: "upload-start", onclick: () => this.start(token, county, files, profile) }, t("upload.start"));
    this.progress = el("div", { id: "upload-progress" });
    this.report = el("div", { id: "upload-report" });
    openPanel("upload", t("upload.title"),
      el("label", {}, t("upload.token"), token), el("small", {}, t("upload.tokenHint")),
      el("label", {}, t("upload.county"), county),
      el("label", {}, t("upload.files"), files),
      el("label", {}, t("upload.profile"), profile),
      start, this.progress, this.report);
    try {
      const list = await getJSON("/api/ingest/profiles", { what: "GET /api/ingest/profiles" });
      for (const p of list || []) profile.append(el("option", { value: p.id }, `${pick(p, "title") || p.id}（${p.id}）`));
    } catch (err) {
      notifyError(err);
      if (err.unavailable) this.progress.replaceChildren(el("p", { class: "error" }, messageOf(err)));
    }
  }

  async start(tokenInput, countyInput, filesInput, profileSelect) {
    setToken(tokenInput.value);
    if (!getToken()) return notify(t("upload.needToken"), "error");
    const county = countyInput.value.trim();
    if (!filesInput.files.length || !county) return notify(t("upload.needFiles"), "error");
    sessionStorage.setItem(COUNTY_KEY, county);
    const form = new FormData();
    for (const f of filesInput.files) form.append("file", f, f.name);
    form.append("county", county);
    if (profileSelect.value) form.append("profile", profileSelect.value);
    form.append("dry_run", "true");
    this.report.replaceChildren();
    try {
      const res = await postForm("/api/ingest", form, { what: "POST /api/ingest" });
      this.job = res.job_id;
      await this.follow();
    } catch (err) {
      this.progress.replaceChildren(el("p", { class: "error" }, messageOf(err)));
      notifyError(err);
    }
  }

  /** Poll the job until it waits for confirmation or ends; then show the report. */
  async follow() {
    let job;
    for (;;) {
      job = await getJSON(`/api/ingest/${encodeURIComponent(this.job)}`, { what: "GET /api/ingest/{job}" });
      this.showState(job);
      if (job.state === "awaiting_confirmation" || FINAL.has(job.state)) break;
      await new Promise((r) => setTimeout(r, 700));
    }
    if (job.state !== "cancelled") await this.showReport(job);
    return job;
  }

  showState(job) {
    const state = t(`state.${job.state}`);
    const bar = el("progress", { max: 100, value: job.progress ?? 0 });
    const msg = (getLang() === "en" ? job.message_en : job.message_zh) || "";
    this.progress.replaceChildren(el("p", { class: `job-state state-${job.state}`, dataset: { state: job.state } },
      t("upload.state", { s: state, p: job.progress ?? 0 })), bar, msg ? el("p", {}, msg) : "");
    if (job.counts && Object.keys(job.counts).length) {
      this.progress.append(el("p", { class: "job-counts" }, Object.entries(job.counts).map(([k, v]) => `${k}: ${typeof v === "number" ? fmt(v, 0) : JSON.stringify(v)}`).join("，")));
    }
  }

  /** A page of the job's grouped report; a finished job's report files appear just after its
   *  state, so a "not ready" answer is asked again for a while. */
  async fetchGroups(offset) {
    const url = `/api/ingest/${encodeURIComponent(this.job)}/groups?offset=${offset}&limit=${GROUPS_PAGE}`;
    const until = Date.now() + REPORT_WAIT_MS;
    for (;;) {
      try {
        return await getJSON(url, { what: "GET /api/ingest/{job}/groups" });
      } catch (err) {
        if (err.status !== 404 || err.unavailable || Date.now() > until) throw err;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  async showReport(job) {
    let page;
    try {
      page = await this.fetchGroups(0);
    } catch (err) {
      notifyError(err);
      return;
    }
    const s = page.summary || {};
    const links = Object.entries(job.links || {}).map(([k, href]) => el("a", { href, target: "_blank", rel: "noopener", dataset: { format: k } }, `${t("upload.download")} ${k.toUpperCase()}`));
    const body = [el("h3", {}, t("upload.report")), el("p", { class: "links" }, links)];
    const sev = s.by_severity || {};
    body.push(el("p", { class: `verdict ${s.accepted ? "ok" : "error"}`, dataset: { accepted: String(!!s.accepted) } },
      t(s.accepted ? "upload.accepted" : "upload.rejected", { e: fmt(sev.error ?? 0, 0), w: fmt(sev.warning ?? 0, 0), g: fmt(page.groups_total ?? 0, 0) })));
    this.ruleNames = Object.fromEntries((s.by_rule || []).map((r) => [r.rule_id, pick(r, "name") || r.rule_id]));
    if (!s.accepted && (s.fix_first || []).length) body.push(this.fixFirst(s.fix_first));
    body.push(this.groupsTable(page));
    const canRecheck = RECHECKABLE.has(job.state) && !job.delivery_id;
    body.push(this.mappingTables(s.layers || [], canRecheck));
    if (job.state === "awaiting_confirmation") {
      body.push(el("div", { class: "actions" },
        el("button", { type: "button", id: "upload-confirm", onclick: () => this.decide("confirm") }, t("upload.confirm")),
        el("button", { type: "button", id: "upload-cancel", onclick: () => this.decide("cancel") }, t("upload.cancel"))));
    }
    this.report.replaceChildren(...body);
  }

  /** What to fix first (rule × layer × field, errors first, biggest first, with the most frequent values). */
  fixFirst(items) {
    const en = getLang() === "en";
    return el("div", { id: "upload-fix-first" }, el("h4", {}, t("upload.fixFirst")),
      el("ol", {}, items.map((a) => el("li", { class: a.severity, dataset: { rule: a.rule_id, layer: a.source_layer, count: String(a.count) } },
        el("b", {}, `${a.rule_id} ${this.ruleNames[a.rule_id] || ""}`), ` · ${a.source_layer}`, a.field ? ` · ${a.field}` : "",
        ` · ${t("upload.times", { n: fmt(a.count, 0) })}`,
        (a.top_values || []).length ? el("div", { class: "top-values" }, (a.top_values || []).map((v) => `${v.value} ×${fmt(v.count, 0)}`).join("、")) : "",
        el("div", { class: "message" }, en ? a.message_en : a.message_zh)))));
  }

  /** The grouped findings, biggest first, a page at a time ("more" fetches the next page). */
  groupsTable(page) {
    const total = page.groups_total ?? 0;
    const box = el("div", { id: "upload-groups", dataset: { total: String(total) } });
    if (!total) {
      box.append(el("p", { class: "ok" }, t("upload.noFindings")));
      return box;
    }
    const tbody = el("tbody");
    const head = [t("upload.rule"), t("upload.severity"), t("upload.layer"), t("upload.field"), t("upload.value"), t("upload.count"), t("upload.firstRows"), t("upload.message")];
    const more = el("button", { type: "button", id: "upload-groups-more" });
    let shown = 0;
    const add = (groups) => {
      for (const g of groups) tbody.append(this.groupRow(g));
      shown += groups.length;
      more.textContent = t("upload.moreGroups", { n: fmt(Math.min(GROUPS_PAGE, total - shown), 0), total: fmt(total, 0) });
      more.hidden = shown >= total;
    };
    more.addEventListener("click", async () => {
      more.disabled = true;
      try {
        add((await this.fetchGroups(shown)).groups || []);
      } catch (err) {
        notifyError(err);
      } finally {
        more.disabled = false;
      }
    });
    add(page.groups || []);
    box.append(el("h4", {}, t("upload.groups", { total: fmt(total, 0) })),
      el("table", { class: "findings groups" }, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))), tbody), more);
    return box;
  }

  groupRow(g) {
    const en = getLang() === "en";
    const rows = (g.rows || []).map((r, i) => (g.keys?.[i] ? `${r}（${g.keys[i]}）` : String(r))).join("、");
    const zoomable = Array.isArray(g.extent) && g.extent.every(Number.isFinite);
    return el("tr", { class: `group ${g.severity}${zoomable ? " zoomable" : ""}`, title: zoomable ? t("upload.zoomExtent") : "",
      dataset: { rule: g.rule_id, layer: g.source_layer, count: String(g.count) }, onclick: zoomable ? () => this.zoomTo(g.extent) : null },
    el("td", { class: "nw" }, g.rule_id, el("div", { class: "rule-name" }, this.ruleNames[g.rule_id] || "")),
    el("td", { class: "sev" }, t(`upload.sev.${g.severity}`)), el("td", {}, g.source_layer || ""), el("td", {}, g.field || ""),
    el("td", {}, g.value ?? ""), el("td", { class: "num" }, fmt(g.count, 0)),
    el("td", { class: "first-rows" }, rows + (g.count > (g.rows || []).length ? " …" : "")),
    el("td", {}, en ? g.message_en : g.message_zh));
  }

  /** The mapping step: per layer a table of delivered field → target column (a select), how it
   *  was decided, confidence and samples; the value mappings (given or proposed) with their
   *  code; an empty row to add a value mapping; and the re-check button. */
  mappingTables(layers, canRecheck) {
    const box = el("div", { id: "upload-mapping" }, el("h4", {}, t("upload.mapping")));
    for (const layer of layers) {
      const columns = layer.columns || [];
      const rows = (layer.mapping || []).map((m) => {
        const sel = el("select", { class: "map-target", dataset: { source: m.source_field, how: m.how, original: m.target || "" } },
          el("option", { value: "" }, t("upload.unmapped")),
          ...columns.map((c) => el("option", { value: c, selected: c === m.target }, c)));
        sel.value = m.target || "";
        return el("tr", { class: `how-${m.how}`, dataset: { source: m.source_field } },
          el("td", {}, m.source_field), el("td", {}, sel), el("td", { class: "how" }, t(`upload.how.${m.how}`)),
          el("td", { class: "num" }, m.how === "unmapped" ? "" : fmt(m.confidence, 2)),
          el("td", { class: "samples" }, (m.samples || []).join("、")), el("td", { class: "reason" }, m.reason || ""));
      });
      const valueRow = (v) => el("tr", { class: `map-value how-${v ? v.how : "new"}` },
        el("td", {}, el("input", { type: "checkbox", class: "map-value-on", checked: v ? v.how === "user" : true })),
        el("td", {}, v ? el("span", {}, el("input", { type: "hidden", class: "map-value-column", value: v.column }), v.column)
          : el("select", { class: "map-value-column" }, el("option", { value: "" }, "—"), ...columns.map((c) => el("option", { value: c }, c)))),
        el("td", {}, v ? el("span", {}, el("input", { type: "hidden", class: "map-value-value", value: v.value }), `${v.value}（${v.count}）`)
          : el("input", { type: "text", class: "map-value-value", size: 8 })),
        el("td", {}, el("input", { type: "text", class: "map-value-code", size: 6, value: v ? v.code : "" })),
        el("td", { class: "reason" }, v ? `${t(`upload.how.${v.how}`)} ${v.reason || ""}` : t("upload.addValue")));
      box.append(el("h5", {}, `${layer.source_layer} → ${layer.target}（${layer.profile}/${layer.spec || ""}）`),
        el("table", { class: "mapping", dataset: { layer: layer.source_layer } },
          el("thead", {}, el("tr", {}, [t("upload.sourceField"), t("upload.target"), t("upload.howTitle"), t("upload.confidence"), t("upload.samples"), t("upload.reason")].map((h) => el("th", {}, h)))),
          el("tbody", {}, rows)),
        el("table", { class: "value-mapping", dataset: { layer: layer.source_layer } },
          el("thead", {}, el("tr", {}, ["", t("upload.target"), t("upload.value"), t("upload.code"), ""].map((h) => el("th", {}, h)))),
          el("tbody", {}, [...(layer.value_mappings || []).map(valueRow), valueRow(null)])));
    }
    if (canRecheck) {
      box.append(el("button", { type: "button", id: "upload-recheck", onclick: () => this.recheck(box) }, t("upload.recheck")));
    }
    return box;
  }

  async recheck(box) {
    const mapping = collectMapping(box);
    try {
      await postJSON(`/api/ingest/${encodeURIComponent(this.job)}/recheck`, mapping, { what: "POST /api/ingest/{job}/recheck" });
      this.report.replaceChildren();
      await this.follow();
    } catch (err) {
      notifyError(err);
    }
  }

  /** Zoom the 2D map to a group's extent [min lon, min lat, max lon, max lat] and outline it
   *  (a single place: centred at street level and marked). */
  zoomTo(extent) {
    const [x0, y0, x1, y1] = extent;
    if (x1 - x0 < 1e-5 && y1 - y0 < 1e-5) {
      const c = [(x0 + x1) / 2, (y0 + y1) / 2];
      this.map.flyTo({ center: c, zoom: Math.max(this.map.getZoom(), 18), duration: 600 });
      highlight(this.map, [{ type: "Feature", geometry: { type: "Point", coordinates: c }, properties: {} }]);
      return;
    }
    this.map.fitBounds([[x0, y0], [x1, y1]], { padding: 40, maxZoom: 18, duration: 600 });
    highlight(this.map, [{ type: "Feature", properties: {},
      geometry: { type: "LineString", coordinates: [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]] } }]);
  }

  async decide(action) {
    try {
      await postJSON(`/api/ingest/${encodeURIComponent(this.job)}/${action}`, {}, { what: `POST /api/ingest/{job}/${action}` });
      notify(t(action === "confirm" ? "upload.confirmed" : "upload.cancelled"), "ok");
      this.report.querySelector(".actions")?.remove();
      const job = await this.follow();
      if (job.state === "done") window.dispatchEvent(new Event("cim:data-changed"));
    } catch (err) {
      notifyError(err);
    }
  }
}

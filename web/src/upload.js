// County upload: with an uploader token (kept in sessionStorage, sent as Bearer), choose the
// delivery's files, pick a survey profile or let the server detect it, upload as a dry run
// (POST /api/ingest, dry_run=true), follow the job (GET /api/ingest/{job}), read the validation
// report grouped by rule (report.json; a finding with x/y zooms the map to it), then confirm
// or cancel the load. The mapping step: after a dry run, each layer's mapping (delivered field →
// target column, how it was decided, confidence, samples) and its value mappings are shown as a
// table; the user changes a target or a value's code, re-checks the stored files with that
// mapping (POST /api/ingest/{job}/recheck) and confirms; confirming saves the mapping as the
// county's (server side).
import { getJSON, postJSON, postForm, getToken, setToken } from "./api.js";
import { t, pick, messageOf, getLang } from "./i18n.js";
import { el, openPanel, notify, notifyError, fmt } from "./ui.js";
import { highlight } from "./map2d.js";

const COUNTY_KEY = "cim.county";
const FINAL = new Set(["done", "rejected", "failed", "cancelled"]);
const SHOW_PER_RULE = 200;
const RECHECKABLE = new Set(["awaiting_confirmation", "rejected"]);

/** The user's mapping read back from the mapping tables of the report panel:
 *  {fields: {source: column}, values: {column: {value: code}}}. A field goes in when its
 *  target was proposed, given by the user, or changed here; a value mapping when it is ticked
 *  and has a code. */
export function collectMapping(root) {
  const fields = {};
  const values = {};
  for (const sel of root.querySelectorAll("select.map-target")) {
    const { source, how, original } = sel.dataset;
    if (sel.value && (how === "proposed" || how === "user" || sel.value !== original)) fields[source] = sel.value;
  }
  for (const row of root.querySelectorAll("tr.map-value")) {
    const on = row.querySelector("input.map-value-on");
    const column = row.querySelector(".map-value-column")?.value?.trim();
    const value = row.querySelector(".map-value-value")?.value?.trim();
    const code = row.querySelector("input.map-value-code")?.value?.trim();
    if (on?.checked && column && value && code) (values[column] ??= {})[value] = code;
  }
  return { fields, values };
}

/** Group report findings by rule id, errors first. */
export function groupFindings(findings) {
  const groups = new Map();
  for (const f of findings || []) {
    if (!groups.has(f.rule_id)) groups.set(f.rule_id, { rule: f.rule_id, severity: f.severity, items: [] });
    groups.get(f.rule_id).items.push(f);
  }
  const rank = { error: 0, warning: 1, info: 2 };
  return [...groups.values()].sort((a, b) => (rank[a.severity] ?? 3) - (rank[b.severity] ?? 3) || b.items.length - a.items.length);
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

  async showReport(job) {
    let report;
    try {
      report = await getJSON(`/api/ingest/${encodeURIComponent(this.job)}/report.json`, { what: "report.json" });
    } catch (err) {
      notifyError(err);
      return;
    }
    const groups = groupFindings(report.findings);
    const links = Object.entries(job.links || {}).map(([k, href]) => el("a", { href, target: "_blank", rel: "noopener" }, `${t("upload.download")} ${k}`));
    const body = [el("h3", {}, t("upload.report")), el("p", { class: "links" }, links)];
    const canRecheck = RECHECKABLE.has(job.state) && !job.delivery_id;
    body.push(this.mappingTables(report.summary?.layers || [], canRecheck));
    if (!groups.length) body.push(el("p", { class: "ok" }, t("upload.noFindings")));
    for (const g of groups) {
      const first = g.items[0];
      const title = `${g.rule}（${g.severity}）× ${g.items.length} — ${getLang() === "en" ? first.message_en : first.message_zh}`;
      const rows = g.items.slice(0, SHOW_PER_RULE).map((f) => el("tr", {
        class: Number.isFinite(f.x) && Number.isFinite(f.y) ? "zoomable" : "", onclick: () => this.zoomTo(f) },
      el("td", {}, f.source_layer || ""), el("td", {}, f.row ?? ""), el("td", {}, f.key || ""), el("td", {}, f.field || ""),
      el("td", {}, getLang() === "en" ? f.message_en : f.message_zh)));
      body.push(el("details", { class: `rule ${g.severity}`, dataset: { rule: g.rule } }, el("summary", {}, title),
        el("table", { class: "findings" }, el("thead", {}, el("tr", {}, [t("upload.layer"), t("upload.row"), "key", "field", t("upload.message")].map((h) => el("th", {}, h)))),
          el("tbody", {}, rows))));
    }
    if (job.state === "awaiting_confirmation") {
      body.push(el("div", { class: "actions" },
        el("button", { type: "button", id: "upload-confirm", onclick: () => this.decide("confirm") }, t("upload.confirm")),
        el("button", { type: "button", id: "upload-cancel", onclick: () => this.decide("cancel") }, t("upload.cancel"))));
    }
    this.report.replaceChildren(...body);
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

  /** Zoom the 2D map to a finding's x/y (lon/lat) and mark it. */
  zoomTo(f) {
    if (!Number.isFinite(f.x) || !Number.isFinite(f.y)) return;
    this.map.flyTo({ center: [f.x, f.y], zoom: Math.max(this.map.getZoom(), 18), duration: 600 });
    highlight(this.map, [{ type: "Feature", geometry: { type: "Point", coordinates: [f.x, f.y] }, properties: {} }]);
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

// The 隐患台账 (hazard ledger) panel: a filtered list of ledger entries (status, rule or source,
// risk level, area, overdue, current view), the listed entries on the map in their risk colours
// (overdue ringed), the detail of one entry (fields, 六定, evidence measured vs required with its
// clause, linked facilities, attachments with photo upload, the audit trail) and the workflow
// actions the caller's token allows (登记 by a patrol, 整改, 验收, 销号, 不成立 …), statistics as
// ECharts charts loaded on demand. Everything goes through the HTTP API (docs/api-contract.md,
// "隐患台账"); the token is the browser session's (api.js), shared with the upload panel.
import { getJSON, postJSON, postForm, getToken, setToken, ApiError } from "../api.js";
import { messageOf, onLangChange } from "../i18n.js";
import { el, openPanel, notify, notifyError, kvTable, fmt, bboxOf } from "../ui.js";
import { highlight } from "../map2d.js";
import { tx, label } from "./text.js";
import { injectStyle } from "./style.js";

const SOURCE = "hz-ledger";
const PAGE = 200;

/** Whether a list feature is overdue (the API flag). */
const isOverdue = (p) => p.overdue === true;

export class HazardPanel {
  /** `map`: the MapLibre map; `tree`: the layer tree (switches the catalogue layer on); `identify`: paused while picking. */
  constructor(map, { tree, identify } = {}) {
    this.map = map;
    this.tree = tree;
    this.identify = identify;
    this.vocab = null;
    this.features = [];
    this.next = null;
    this.current = null; // the entry shown in detail
    this.view = "list";
    onLangChange(() => { if (this.isOpen()) this.render(); });
  }

  isOpen() {
    const panel = document.getElementById("panel");
    return !panel.hidden && panel.dataset.owner === "hazards";
  }

  async vocabulary() {
    if (!this.vocab) this.vocab = await getJSON("/api/hazards/vocabulary", { what: "GET /api/hazards/vocabulary" });
    return this.vocab;
  }

  // ---- labels -------------------------------------------------------------------------------
  status(code) { return label(this.vocab?.statuses?.[code], code); }
  source(code) { return label(this.vocab?.sources?.[code], code); }
  ftype(code) { return label(this.vocab?.facility_types?.[code], code); }
  level(code) { return label(this.vocab?.risk_levels?.[String(code)], String(code ?? "")); }
  hex(code) { return this.vocab?.risk_levels?.[String(code)]?.hex || "#888"; }
  rule(id) { const r = this.vocab?.rules?.[id]; return r ? `${id} ${label({ zh: r.name_zh, en: r.name_en })}` : id; }
  field(name) {
    const spec = this.vocab?.fields?.[name];
    if (spec) return label(spec, name);
    return tx(`f.${name}`) === `f.${name}` ? name : tx(`f.${name}`);
  }
  action(name) {
    if (this.vocab?.actions?.[name]) return label(this.vocab.actions[name], name);
    return tx(`ev.${name}`) === `ev.${name}` ? name : tx(`ev.${name}`);
  }
  /** A changed field's value as people read it (codes by their labels). */
  shown(name, value) {
    if (value === null || value === undefined || value === "") return "—";
    if (name === "status") return this.status(value);
    if (name === "risk_level") return this.level(value);
    if (name === "hazard_class") return label(this.vocab?.hazard_classes?.[value], value);
    if (name === "supervision") return label(this.vocab?.supervision?.[value], value);
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  /** Open the panel on the list (the first time: vocabulary, filters, map layer). */
  async open() {
    injectStyle();
    openPanel("hazards", tx("open"), el("p", {}, "…"));
    try {
      await this.vocabulary();
    } catch (err) {
      openPanel("hazards", tx("open"), el("p", { class: "error" }, messageOf(err)));
      return notifyError(err);
    }
    this.tree?.setVisible?.("hazards", true);
    this.view = "list";
    this.render();
    await this.refresh();
  }

  render() {
    if (this.view === "detail" && this.current) return this.renderDetail(this.current);
    if (this.view === "new") return this.renderNew();
    return this.renderList();
  }

  // ---- list ---------------------------------------------------------------------------------
  filterBar() {
    const v = this.vocab;
    const f = this.filters || (this.filters = { status: "open", rule: "", risk: "", county: this.pickerCounty(), overdue: false, inView: false });
    const opt = (value, text, chosen) => el("option", { value, selected: value === chosen }, text);
    const status = el("select", { id: "hz-f-status", onchange: (e) => { f.status = e.target.value; } },
      opt("", tx("all"), f.status), opt("open", tx("openOnly"), f.status),
      Object.keys(v.statuses).map((c) => opt(c, this.status(c), f.status)));
    const rule = el("select", { id: "hz-f-rule", onchange: (e) => { f.rule = e.target.value; } }, opt("", tx("all"), f.rule),
      el("optgroup", { label: tx("source") }, Object.keys(v.sources).map((c) => opt(`source:${c}`, this.source(c), f.rule))),
      el("optgroup", { label: tx("rule") }, Object.keys(v.rules).sort().map((id) => opt(`rule:${id}`, this.rule(id), f.rule))));
    const risk = el("select", { id: "hz-f-risk", onchange: (e) => { f.risk = e.target.value; } }, opt("", tx("all"), f.risk),
      Object.keys(v.risk_levels).map((c) => opt(c, `${this.level(c)}（${label({ zh: v.risk_levels[c].colour_zh, en: v.risk_levels[c].colour })}）`, f.risk)));
    const county = el("input", { id: "hz-f-county", type: "text", size: 8, pattern: "\\d{6}", value: f.county, placeholder: "430000",
      onchange: (e) => { f.county = e.target.value.trim(); } });
    const overdue = el("input", { id: "hz-f-overdue", type: "checkbox", checked: f.overdue, onchange: (e) => { f.overdue = e.target.checked; } });
    const inView = el("input", { id: "hz-f-view", type: "checkbox", checked: f.inView, onchange: (e) => { f.inView = e.target.checked; } });
    return el("fieldset", { class: "hz-filters" }, el("legend", {}, tx("filters")),
      el("label", {}, tx("status"), status), el("label", {}, tx("ruleSource"), rule), el("label", {}, tx("risk"), risk),
      el("label", {}, tx("area"), county),
      el("label", { class: "hz-check" }, overdue, " ", tx("overdueOnly")), el("label", { class: "hz-check" }, inView, " ", tx("inView")),
      el("button", { type: "button", id: "hz-apply", onclick: () => this.refresh() }, tx("apply")));
  }

  /** The county of the admin area chosen in the top bar (its first six digits), or "". */
  pickerCounty() {
    const code = document.getElementById("admin-picker")?.selectedOptions[0]?.dataset.code || "";
    return code.length >= 6 ? code.slice(0, 6) : "";
  }

  /** Query string of the current filters (the list, stats and exports share it). */
  query() {
    const f = this.filters || {};
    const q = new URLSearchParams();
    if (f.status) q.set("status", f.status);
    if (f.rule?.startsWith("rule:")) q.set("rule", f.rule.slice(5));
    if (f.rule?.startsWith("source:")) q.set("source", f.rule.slice(7));
    if (f.risk) q.set("risk_level", f.risk);
    if (f.county) q.set("county", f.county);
    if (f.overdue) q.set("overdue", "true");
    if (f.inView) {
      const b = this.map.getBounds();
      q.set("bbox", [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((x) => x.toFixed(6)).join(","));
    }
    return q;
  }

  tokenBar() {
    const input = el("input", { type: "password", id: "hz-token", value: getToken() || "", autocomplete: "off", size: 24 });
    return el("div", { class: "hz-token" }, el("label", {}, tx("token"), input),
      el("button", { type: "button", id: "hz-token-use", onclick: () => {
        setToken(input.value);
        notify(tx("tokenSaved"), "ok", 2500);
        if (this.view === "detail" && this.current) this.show(this.current.id);
      } }, tx("tokenUse")));
  }

  renderList() {
    const q = this.query();
    this.listBox = el("div", { id: "hz-list" });
    this.chartBox = el("div", { id: "hz-charts", hidden: true },
      el("p", { id: "hz-stats-total" }),
      el("div", { id: "hz-chart-status", class: "hz-chart" }), el("div", { id: "hz-chart-level", class: "hz-chart" }),
      el("div", { id: "hz-chart-type", class: "hz-chart" }));
    const tools = el("div", { class: "hz-tools" },
      el("button", { type: "button", id: "hz-new", onclick: () => { this.view = "new"; this.render(); } }, tx("new")),
      el("button", { type: "button", id: "hz-stats-btn", onclick: () => this.toggleCharts() }, tx("stats")),
      el("a", { id: "hz-export-xlsx", href: `/api/hazards/export.xlsx?${q}`, download: "" }, tx("exportXlsx")),
      el("a", { id: "hz-export-html", href: `/api/hazards/export.html?${q}`, target: "_blank", rel: "noopener" }, tx("exportHtml")));
    openPanel("hazards", tx("open"), this.tokenBar(), tools, this.filterBar(), this.chartBox, this.listBox);
    this.drawList();
  }

  /** Reload the list (and the charts when shown) with the current filters. */
  async refresh() {
    const q = this.query();
    q.set("limit", String(PAGE));
    try {
      const fc = await getJSON(`/api/hazards?${q}`, { what: "GET /api/hazards" });
      this.features = fc.features || [];
      this.matched = fc.numberMatched;
      this.next = (fc.links || []).find((l) => l.rel === "next")?.href || null;
    } catch (err) {
      this.features = [];
      this.next = null;
      notifyError(err);
    }
    this.drawMap();
    if (this.view !== "list") return;
    for (const a of [["hz-export-xlsx", "export.xlsx"], ["hz-export-html", "export.html"]]) {
      const link = document.getElementById(a[0]);
      if (link) link.href = `/api/hazards/${a[1]}?${this.query()}`;
    }
    this.drawList();
    if (this.chartBox && !this.chartBox.hidden) await this.drawCharts();
  }

  async more() {
    if (!this.next) return;
    try {
      const fc = await getJSON(this.next, { what: "GET /api/hazards" });
      this.features.push(...(fc.features || []));
      this.next = (fc.links || []).find((l) => l.rel === "next")?.href || null;
    } catch (err) {
      notifyError(err);
    }
    this.drawMap();
    this.drawList();
  }

  drawList() {
    if (!this.listBox) return;
    if (!this.features.length) return this.listBox.replaceChildren(el("p", { class: "hz-empty" }, tx("none")));
    const rows = this.features.map((f) => {
      const p = f.properties;
      return el("li", { class: "hz-item", dataset: { id: String(p.id), number: p.number, status: p.status }, onclick: () => this.show(p.id) },
        el("span", { class: "hz-dot", style: `background:${p.risk_hex || this.hex(p.risk_level)}`, title: this.level(p.risk_level) }),
        el("span", { class: "hz-num" }, p.number),
        el("span", { class: "hz-badge hz-st", dataset: { status: p.status } }, this.status(p.status)),
        isOverdue(p) ? el("span", { class: "hz-badge hz-overdue" }, tx("overdue")) : null,
        p.condition_cleared ? el("span", { class: "hz-badge hz-cleared" }, tx("cleared")) : null,
        el("div", { class: "hz-title" }, p.title),
        el("small", {}, [p.rule_id ? this.rule(p.rule_id) : this.source(p.source), this.ftype(p.facility_type), p.location].filter(Boolean).join(" · ")));
    });
    this.listBox.replaceChildren(el("p", { id: "hz-count" }, tx("count", { n: this.matched ?? this.features.length })),
      el("ul", { class: "hz-items" }, rows));
    if (this.next) this.listBox.append(el("button", { type: "button", id: "hz-more", onclick: () => this.more() }, tx("more")));
  }

  // ---- map ----------------------------------------------------------------------------------
  /** The listed entries as circles in their risk colours (overdue: a dark red ring). */
  drawMap() {
    const data = { type: "FeatureCollection", features: this.features.filter((f) => f.geometry) };
    const src = this.map.getSource(SOURCE);
    if (src) return src.setData(data);
    this.map.addSource(SOURCE, { type: "geojson", data });
    this.map.addLayer({ id: "hz-ledger-circle", type: "circle", source: SOURCE, metadata: { "cim:panel": "hazards" },
      paint: { "circle-radius": 7, "circle-color": ["coalesce", ["get", "risk_hex"], "#888888"],
        "circle-stroke-width": ["case", ["==", ["get", "overdue"], true], 3, 1.5],
        "circle-stroke-color": ["case", ["==", ["get", "overdue"], true], "#7a0010", "#ffffff"] } });
    // a press on an entry opens it here instead of the identify popup
    this.map.on("mousedown", "hz-ledger-circle", () => {
      if (!this.identify || !this.isOpen()) return;
      this.identify.enabled = false;
      setTimeout(() => { this.identify.enabled = true; }, 600);
    });
    this.map.on("click", "hz-ledger-circle", (e) => {
      const id = e.features?.[0]?.properties?.id;
      if (id && this.isOpen()) this.show(Number(id));
    });
    this.map.on("mouseenter", "hz-ledger-circle", () => { this.map.getCanvas().style.cursor = "pointer"; });
    this.map.on("mouseleave", "hz-ledger-circle", () => { this.map.getCanvas().style.cursor = ""; });
  }

  /** Tell the vector layers that the ledger changed (the catalogue layer hazards follows it). */
  changed() {
    window.dispatchEvent(new CustomEvent("cim:data-changed", { detail: { layers: ["hazards"] } }));
  }

  // ---- charts -------------------------------------------------------------------------------
  async toggleCharts() {
    this.chartBox.hidden = !this.chartBox.hidden;
    if (!this.chartBox.hidden) await this.drawCharts();
  }

  async drawCharts() {
    try {
      const q = this.query();
      const [stats, mod] = await Promise.all([
        getJSON(`/api/hazards/stats?${q}`, { what: "GET /api/hazards/stats" }),
        import("./charts.js"),
      ]);
      document.getElementById("hz-stats-total").textContent = tx("total", { n: stats.total, o: stats.overdue });
      this.chartData = mod.drawCharts(
        { status: document.getElementById("hz-chart-status"), level: document.getElementById("hz-chart-level"),
          type: document.getElementById("hz-chart-type") },
        stats, { status: (c) => this.status(c), level: (c) => this.level(c), type: (c) => this.ftype(c), hex: (c) => this.hex(c) },
        { status: tx("byStatus"), level: tx("byLevel"), type: tx("byType") });
      this.chartBox.dataset.drawn = "true";
    } catch (err) {
      notifyError(err);
    }
  }

  // ---- detail -------------------------------------------------------------------------------
  /** Load one entry (with the caller's allowed actions) and show it. */
  async show(id) {
    try {
      const entry = await getJSON(`/api/hazards/${encodeURIComponent(id)}`, { what: "GET /api/hazards/{id}" });
      this.current = entry;
      this.view = "detail";
      this.renderDetail(entry);
      const shape = entry.geometry || entry.marker;
      if (shape) {
        highlight(this.map, [{ type: "Feature", geometry: shape, properties: {} }]);
        const b = bboxOf(shape);
        this.map.easeTo({ center: [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2], duration: 0 });
      }
    } catch (err) {
      notifyError(err);
    }
  }

  renderDetail(h) {
    const dash = (v) => (v === null || v === undefined || v === "" ? "—" : v);
    const head = el("div", { class: "hz-head" },
      el("span", { class: "hz-dot", style: `background:${this.hex(h.risk_level)}` }),
      el("strong", { id: "hz-d-number" }, h.number), " ",
      el("span", { class: "hz-badge hz-st", id: "hz-d-status", dataset: { status: h.status } }, this.status(h.status)),
      h.overdue ? el("span", { class: "hz-badge hz-overdue" }, tx("overdue")) : null,
      h.condition_cleared ? el("span", { class: "hz-badge hz-cleared" }, tx("cleared")) : null);
    const fields = kvTable([
      [tx("title"), h.title], [tx("source"), this.source(h.source)], h.rule_id ? [tx("rule"), this.rule(h.rule_id)] : null,
      [tx("facilityType"), this.ftype(h.facility_type)], [tx("hazardClass"), label(this.vocab.hazard_classes?.[h.hazard_class], dash(h.hazard_class))],
      [tx("risk"), `${this.level(h.risk_level)}（${label({ zh: this.vocab.risk_levels?.[h.risk_level]?.colour_zh, en: this.vocab.risk_levels?.[h.risk_level]?.colour })}）`],
      [tx("supervision"), label(this.vocab.supervision?.[h.supervision], dash(h.supervision))],
      [tx("location"), dash(h.location)], [tx("county"), [h.county_code, h.street_code, h.community_code].filter(Boolean).join(" / ")],
      [tx("foundAt"), `${dash(h.found_at)} ${h.found_by ? `（${h.found_by}）` : ""}`], [tx("description"), dash(h.description)],
      h.verify_result ? [tx("verify"), `${h.verify_result}（${dash(h.verified_by)} ${dash(h.verified_at)}）`] : null,
      h.closed_at ? [tx("closedAt"), `${h.closed_at}（${dash(h.closed_by)}）`] : null,
      h.previous ? [tx("previous"), el("a", { href: "#", onclick: (e) => { e.preventDefault(); this.show(h.previous.id); } }, h.previous.number)] : null,
    ].filter(Boolean));
    fields.id = "hz-d-fields";
    const six = kvTable((this.vocab.six_fixed || []).concat(["responsible_unit", "contact", "interim_controls"])
      .filter((n, i, a) => a.indexOf(n) === i && n !== "title").map((n) => [this.field(n), dash(h[n])]));
    const parts = [
      el("button", { type: "button", id: "hz-back", onclick: () => { this.view = "list"; this.current = null; highlight(this.map, []); this.render(); this.refresh(); } }, tx("back")),
      this.tokenBar(), head, fields,
      el("h3", {}, tx("sixFixed")), six,
      this.evidence(h), this.facilities(h),
      el("h3", {}, tx("actions")), this.actions(h),
      el("h3", {}, tx("attachments")), this.attachments(h),
      el("h3", {}, tx("timeline")), this.timeline(h),
    ];
    openPanel("hazards", `${tx("open")} · ${h.number}`, ...parts.filter(Boolean));
  }

  evidence(h) {
    const e = h.evidence;
    if (!e || (e.measured === undefined && !e.clause)) return null;
    const unit = e.unit ? ` ${e.unit}` : "";
    const rows = [
      [tx("measured"), e.measured === null || e.measured === undefined ? "—" : `${fmt(e.measured, 3)}${unit}`],
      [tx("required"), e.required === null || e.required === undefined ? "—" : `${e.comparison || ""} ${fmt(e.required, 3)}${unit}`.trim()],
      [tx("clause"), e.clause || "—"],
    ];
    const inputs = Object.entries(e.inputs || {}).filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join("，");
    if (inputs) rows.push([tx("inputs"), inputs]);
    const table = kvTable(rows);
    table.id = "hz-d-evidence";
    return el("section", {}, el("h3", {}, tx("evidence")), table);
  }

  facilities(h) {
    const refs = h.facility_refs || [];
    if (!refs.length) return null;
    return el("section", {}, el("h3", {}, tx("facilities")),
      el("ul", { class: "hz-refs" }, refs.map((r) => el("li", {}, [r.table, r.network, r.code || r.key || r.id].filter(Boolean).join(" · ")))));
  }

  timeline(h) {
    const events = [...(h.events || [])].sort((a, b) => (a.id ?? 0) - (b.id ?? 0));
    return el("ol", { id: "hz-events", class: "hz-events" }, events.map((ev) => {
      const changes = Object.entries(ev.changes || {}).map(([k, v]) => `${this.field(k)}：${Array.isArray(v) ? `${this.shown(k, v[0])} → ${this.shown(k, v[1])}` : JSON.stringify(v)}`);
      return el("li", { dataset: { action: ev.action || "", to: ev.to_status || "" } },
        el("div", {}, el("time", {}, (ev.at || "").replace("T", " ").slice(0, 19)), " ",
          el("strong", {}, this.action(ev.action)), " ",
          el("span", { class: "hz-actor" }, `${ev.actor || "—"}${ev.role ? `（${ev.role}）` : ""}`)),
        ev.from_status || ev.to_status ? el("div", { class: "hz-move" }, `${ev.from_status ? this.status(ev.from_status) : "—"} → ${ev.to_status ? this.status(ev.to_status) : "—"}`) : null,
        ev.comment ? el("div", { class: "hz-comment" }, ev.comment) : null,
        changes.length ? el("div", { class: "hz-changes" }, changes.join("；")) : null);
    }));
  }

  attachments(h) {
    const list = el("ul", { id: "hz-attachments", class: "hz-files" }, (h.attachments || []).map((a) => el("li", {},
      a.media_type?.startsWith("image/") ? el("img", { src: a.href, alt: a.file_name, loading: "lazy" }) : null,
      el("a", { href: a.href, target: "_blank", rel: "noopener" }, a.file_name),
      el("small", {}, ` ${label(this.vocab.attachment_kinds?.[a.kind], a.kind)} · ${a.uploaded_by || ""} · ${a.sha256?.slice(0, 12)}…`),
      a.caption ? el("div", {}, a.caption) : null)));
    const file = el("input", { type: "file", id: "hz-file", accept: "image/jpeg,image/png,image/webp,application/pdf" });
    const kind = el("select", { id: "hz-file-kind" }, Object.keys(this.vocab.attachment_kinds || {}).map((k) =>
      el("option", { value: k }, label(this.vocab.attachment_kinds[k], k))));
    const caption = el("input", { type: "text", id: "hz-file-caption", size: 16 });
    const send = async () => {
      if (!file.files.length) return;
      const form = new FormData();
      form.append("file", file.files[0]);
      form.append("kind", kind.value);
      if (caption.value.trim()) form.append("caption", caption.value.trim());
      try {
        await postForm(`/api/hazards/${h.id}/attachments`, form, { what: "POST /api/hazards/{id}/attachments" });
        notify(tx("uploaded"), "ok", 2500);
        await this.show(h.id);
      } catch (err) {
        notifyError(err);
      }
    };
    return el("div", {}, list, el("div", { class: "hz-upload" }, el("label", {}, tx("uploadKind"), kind),
      el("label", {}, tx("caption"), caption), file, el("button", { type: "button", id: "hz-file-send", onclick: send }, tx("upload"))));
  }

  // ---- workflow actions ---------------------------------------------------------------------
  actions(h) {
    const allowed = h.allowed_actions || [];
    this.actionForm = el("div", { id: "hz-action-form" });
    if (!allowed.length) return el("div", { id: "hz-actions" }, el("p", { class: "hz-empty" }, tx("noActions")));
    return el("div", {}, el("div", { id: "hz-actions", class: "hz-actions" }, allowed.map((name) =>
      el("button", { type: "button", dataset: { action: name }, onclick: () => this.actionDialog(h, name) }, this.action(name)))), this.actionForm);
  }

  /** An input for one ledger field (type from the vocabulary), prefilled from the entry. */
  input(name, value) {
    const spec = this.vocab.fields?.[name] || {};
    const id = `hz-in-${name}`;
    if (spec.type === "level") {
      return el("select", { id, name }, Object.keys(this.vocab.risk_levels).map((c) => el("option", { value: c, selected: String(value) === c }, this.level(c))));
    }
    if (spec.type === "code") {
      const codes = Object.keys(this.vocab[spec.codes] || {});
      return el("select", { id, name }, el("option", { value: "" }, "—"),
        codes.map((c) => el("option", { value: c, selected: value === c }, label(this.vocab[spec.codes][c], c))));
    }
    if (spec.type === "date") return el("input", { id, name, type: "date", value: value || "" });
    if (spec.type === "money") return el("input", { id, name, type: "number", min: "0", step: "0.01", value: value ?? "" });
    if (name === "description" || name === "measures" || name === "interim_controls" || name === "verify_result") {
      return el("textarea", { id, name, rows: 2 }, value ?? "");
    }
    return el("input", { id, name, type: "text", value: value ?? "" });
  }

  /** A field's value from its input, typed for the API (null when empty). */
  static value(input) {
    const v = input.value.trim();
    if (v === "") return null;
    if (input.type === "number") return Number(v);
    if (input.name === "risk_level") return Number(v);
    return v;
  }

  actionDialog(h, name) {
    const a = this.vocab.actions?.[name] || {};
    const required = new Set([...(Array.isArray(a.require) ? a.require : a.require === "six_fixed" ? this.vocab.six_fixed || [] : [])]);
    const inputs = (a.fields || []).map((f) => this.input(f, h[f]));
    const comment = a.comment ? el("textarea", { id: "hz-in-comment", rows: 2 }) : null;
    const submit = async () => {
      const fields = {};
      for (const input of inputs) {
        const value = HazardPanel.value(input);
        const old = h[input.name] ?? null;
        if (String(value ?? "") !== String(old ?? "")) fields[input.name] = value;
      }
      const body = { action: name, version: h.version };
      if (Object.keys(fields).length) body.fields = fields;
      if (comment && comment.value.trim()) body.comment = comment.value.trim();
      try {
        const entry = await postJSON(`/api/hazards/${h.id}/transition`, body, { what: "POST /api/hazards/{id}/transition" });
        notify(tx("done", { action: this.action(name), number: entry.number }), "ok", 3000);
        this.current = entry;
        this.renderDetail(entry);
        this.changed();
        this.refresh();
      } catch (err) {
        if (err instanceof ApiError && err.status === 409 && err.detail?.current) {
          notify(tx("stale"), "error", 6000);
          this.current = err.detail.current;
          return this.renderDetail(this.current);
        }
        if (err instanceof ApiError && err.detail?.missing) {
          notify(tx("missing", { fields: err.detail.missing.map((f) => this.field(f)).join("、") }), "error", 8000);
        }
        notifyError(err);
      }
    };
    this.actionForm.replaceChildren(el("form", { class: "hz-form", dataset: { action: name }, onsubmit: (e) => { e.preventDefault(); submit(); } },
      el("h4", {}, this.action(name)),
      inputs.map((input) => el("label", {}, `${this.field(input.name)}${required.has(input.name) ? " *" : ""}`, input)),
      comment ? el("label", {}, `${tx("comment")}${a.comment === "required" ? tx("commentRequired") : ""}`, comment) : null,
      el("div", {}, el("button", { type: "submit", id: "hz-action-submit" }, tx("submit")), " ",
        el("button", { type: "button", onclick: () => this.actionForm.replaceChildren() }, tx("cancel")))));
  }

  // ---- registration -------------------------------------------------------------------------
  renderNew() {
    const reg = this.vocab.registration || {};
    const sources = reg.sources || Object.keys(this.vocab.sources).filter((s) => s !== "rule");
    const source = el("select", { id: "hz-in-source" }, sources.map((s) => el("option", { value: s, selected: s === "patrol" }, this.source(s))));
    const ftype = el("select", { id: "hz-in-facility_type" }, Object.keys(this.vocab.facility_types).map((c) => el("option", { value: c }, this.ftype(c))));
    const county = el("input", { id: "hz-in-county", type: "text", size: 8, pattern: "\\d{6}", value: this.filters?.county || this.pickerCounty() });
    const inputs = (reg.fields || ["title", "description", "location", "hazard_class", "risk_level"]).map((f) => this.input(f, f === "risk_level" ? 3 : f === "hazard_class" ? "general" : null));
    const pos = el("input", { id: "hz-in-position", type: "text", size: 24, readonly: true, value: this.picked ? this.picked.map((x) => x.toFixed(6)).join(", ") : "" });
    const pick = el("button", { type: "button", id: "hz-pick", onclick: () => this.pickPosition(pos) }, tx("pick"));
    const required = new Set(reg.require || []);
    const submit = async () => {
      if (!this.picked) return notify(tx("needPosition"), "error");
      const body = { county: county.value.trim(), source: source.value, facility_type: ftype.value,
        geometry: { type: "Point", coordinates: this.picked } };
      for (const input of inputs) {
        const v = HazardPanel.value(input);
        if (v !== null) body[input.name] = v;
      }
      try {
        const entry = await postJSON("/api/hazards", body, { what: "POST /api/hazards" });
        notify(tx("registered", { number: entry.number }), "ok", 4000);
        this.picked = null;
        this.changed();
        await this.refresh();
        this.current = entry;
        this.view = "detail";
        this.renderDetail(entry);
      } catch (err) {
        notifyError(err);
      }
    };
    openPanel("hazards", `${tx("open")} · ${tx("new")}`,
      el("button", { type: "button", id: "hz-back", onclick: () => { this.view = "list"; this.render(); } }, tx("back")),
      this.tokenBar(),
      el("form", { class: "hz-form", id: "hz-new-form", onsubmit: (e) => { e.preventDefault(); submit(); } },
        el("label", {}, `${tx("source")} *`, source), el("label", {}, `${tx("facilityType")} *`, ftype),
        el("label", {}, `${tx("county")} *`, county),
        el("label", {}, `${tx("position")} *`, pos, pick),
        inputs.map((input) => el("label", {}, `${this.field(input.name)}${required.has(input.name) ? " *" : ""}`, input)),
        el("button", { type: "submit", id: "hz-new-submit" }, tx("submit"))));
  }

  /** One click on the map sets the registration's position (identify paused meanwhile). */
  pickPosition(output) {
    notify(tx("pickHint"), "info", 4000);
    if (this.identify) this.identify.enabled = false;
    this.map.getCanvas().style.cursor = "crosshair";
    this.map.once("click", (e) => {
      this.picked = [e.lngLat.lng, e.lngLat.lat];
      output.value = this.picked.map((x) => x.toFixed(6)).join(", ");
      this.map.getCanvas().style.cursor = "";
      highlight(this.map, [{ type: "Feature", geometry: { type: "Point", coordinates: this.picked }, properties: {} }]);
      setTimeout(() => { if (this.identify) this.identify.enabled = true; }, 300);
    });
  }
}

/** Wire the top-bar button (#btn-hazards) to the panel; returns the panel. */
export function setupHazards(map, deps) {
  const panel = new HazardPanel(map, deps);
  const btn = document.getElementById("btn-hazards");
  if (btn) {
    const name = () => { btn.textContent = tx("open"); };
    name();
    onLangChange(name);
    btn.addEventListener("click", () => panel.open());
  }
  return panel;
}

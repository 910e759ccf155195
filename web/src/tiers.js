// 下级平台运行状态 (lower-tier running status): every platform below this one (GET /api/tiers)
// with its status colour (green / amber / red from heartbeat age and replication lag, thresholds
// set on the server), the reasons, its last heartbeat, lag, last delivery, data versions and
// errors of the last hour. The panel refreshes every few seconds while it is open; a row zooms
// the map to that county (its admin area, else its DEM extent). The one-map itself already
// shows every county: their rows are in the same tables, so no layer changes.
import { getJSON } from "./api.js";
import { t, getLang, onLangChange } from "./i18n.js";
import { el, openPanel, notifyError, fmt } from "./ui.js";
import { zoomToBbox } from "./search.js";

const REFRESH_MS = 5000;

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 90) return t("tiers.seconds", { n: fmt(seconds, 0) });
  if (seconds < 5400) return t("tiers.minutes", { n: fmt(seconds / 60, 0) });
  return t("tiers.hours", { n: fmt(seconds / 3600, 1) });
}

function when(iso) {
  if (!iso) return "—";
  return new Date(iso).toLocaleString(getLang() === "en" ? "en-GB" : "zh-CN", { hour12: false });
}

/** Sum of the data versions of the feature tables (grows with every change of the model). */
function versionSum(versions) {
  return Object.values(versions || {}).reduce((a, b) => a + Number(b || 0), 0);
}

export class TiersPanel {
  constructor(map) {
    this.map = map;
    this.timer = null;
    this.data = null;
    onLangChange(() => {
      if (!this.isOpen()) return;
      document.getElementById("panel-title").textContent = t("tiers.title");
      this.render();
    });
  }

  isOpen() {
    const panel = document.getElementById("panel");
    return !panel.hidden && panel.dataset.owner === "tiers";
  }

  async open() {
    this.body = openPanel("tiers", t("tiers.title"), el("p", { class: "tiers-loading" }, t("tiers.loading")));
    await this.refresh();
    clearInterval(this.timer);
    this.timer = setInterval(() => {
      if (!this.isOpen()) { clearInterval(this.timer); this.timer = null; return; }
      this.refresh();
    }, REFRESH_MS);
  }

  async refresh() {
    try {
      this.data = await getJSON("/api/tiers", { what: "GET /api/tiers" });
      if (this.isOpen()) this.render();
    } catch (err) {
      notifyError(err);
      if (this.isOpen()) this.body.replaceChildren(el("p", { class: "error" }, err.message_zh && getLang() !== "en" ? err.message_zh : (err.message_en || String(err))));
    }
  }

  render() {
    const d = this.data;
    if (!d) return;
    const me = d.self;
    const head = me
      ? el("p", { class: "tiers-self" }, t("tiers.self", { code: me.code, name: me.name, level: getLang() === "en" ? me.level : me.level_zh }))
      : el("p", { class: "tiers-self" }, t("tiers.noIdentity"));
    const counts = el("p", { class: "tiers-summary" },
      ...["green", "amber", "red"].map((c) => el("span", { class: `tier-badge status-${c}`, dataset: { status: c } }, `${t(`tiers.${c}`)} ${d.summary[c]}`)));
    if (!d.instances.length) {
      this.body.replaceChildren(head, el("p", { id: "tiers-empty" }, t("tiers.none")));
      return;
    }
    const rows = d.instances.map((i) => {
      const reasons = (i.reasons || []).map((r) => (getLang() === "en" ? r.en : r.zh)).join("；");
      const tr = el("tr", { class: `tier-row status-${i.status}${i.bbox ? " zoomable" : ""}`, dataset: { code: i.code, status: i.status },
        title: i.bbox ? t("tiers.zoom") : "", onclick: () => { if (i.bbox) zoomToBbox(this.map, i.bbox, 16); } },
        el("td", {}, el("span", { class: `tier-dot status-${i.status}`, title: t(`tiers.${i.status}`) }), " ", t(`tiers.${i.status}`)),
        el("td", {}, el("strong", {}, i.name || i.code), el("br"), el("small", {}, `${i.code} · ${getLang() === "en" ? i.level : i.level_zh}`)),
        el("td", { class: "tier-age" }, ago(i.age_s)),
        el("td", { class: "tier-lag" }, i.lag_s === null || i.lag_s === undefined ? "—" : t("tiers.secondsShort", { n: fmt(i.lag_s, 1) })),
        el("td", { class: "tier-delivery" }, i.last_delivery_id ? `#${i.last_delivery_id}` : "—", el("br"), el("small", {}, when(i.last_delivery_at))),
        el("td", { class: "tier-versions", title: JSON.stringify(i.data_versions || {}) }, i.data_versions ? String(versionSum(i.data_versions)) : "—"),
        el("td", { class: "tier-version" }, i.software_version || "—"));
      const detail = el("tr", { class: `tier-reasons status-${i.status}`, dataset: { code: i.code } },
        el("td", { colspan: 7 }, reasons || t("tiers.ok")));
      return [tr, detail];
    });
    const table = el("table", { id: "tiers-table", class: "tiers" },
      el("thead", {}, el("tr", {}, ...["status", "platform", "heartbeat", "lag", "delivery", "versions", "software"].map((k) => el("th", {}, t(`tiers.col.${k}`))))),
      el("tbody", {}, rows.flat()));
    const th = d.thresholds;
    const foot = el("p", { class: "tiers-thresholds" }, el("small", {}, t("tiers.thresholds", {
      amber: fmt(th.amber_after_s, 0), red: fmt(th.red_after_s, 0), lagAmber: fmt(th.lag_amber_s, 0), lagRed: fmt(th.lag_red_s, 0) })));
    this.body.replaceChildren(head, counts, table, foot);
  }
}

// Small shared pieces of the interface: notices, the side panel, element building, number
// formatting. No framework: plain DOM.
import { messageOf, t, getLang } from "./i18n.js";

/** Create an element: el("td", {class: "x"}, "text", child…). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k in node && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** Show a short message at the bottom of the map; kind is "info", "ok" or "error". */
export function notify(text, kind = "info", ms = 6000) {
  const box = document.getElementById("notices");
  const item = el("div", { class: `notice ${kind}` }, text);
  box.append(item);
  if (ms) setTimeout(() => item.remove(), ms);
  return item;
}

/** Show an error (ApiError or any Error) in the current language. */
export function notifyError(err) {
  if (err?.name === "AbortError") return;
  console.warn(err);
  notify(messageOf(err), "error", 9000);
}

let panelOwner = null;
let panelLayout = () => {};

/** Called whenever the side panel opens or closes (the map beside it changes size). */
export function onPanelLayout(fn) {
  panelLayout = fn;
}

/** Open the side panel with a title and body; returns the body element. */
export function openPanel(owner, title, ...content) {
  const panel = document.getElementById("panel");
  document.getElementById("panel-title").textContent = title;
  const body = document.getElementById("panel-body");
  body.replaceChildren(...content);
  panel.dataset.owner = owner;
  panel.hidden = false;
  panelOwner = owner;
  panelLayout();
  return body;
}

/** Close the panel (only if `owner` still owns it, when given). */
export function closePanel(owner) {
  if (owner && panelOwner !== owner) return;
  document.getElementById("panel").hidden = true;
  panelOwner = null;
  panelLayout();
}

/** Format a number for the current locale. */
export function fmt(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return "";
  return Number(value).toLocaleString(getLang() === "en" ? "en-GB" : "zh-CN", { maximumFractionDigits: digits });
}

/** A length in m or km. */
export function fmtLength(m) {
  return m >= 1000 ? `${fmt(m / 1000, 3)} ${t("units.km")}` : `${fmt(m, 2)} ${t("units.m")}`;
}

/** An area in m², ha or km². */
export function fmtArea(m2) {
  if (m2 >= 1e6) return `${fmt(m2 / 1e6, 3)} ${t("units.km2")}`;
  if (m2 >= 1e4) return `${fmt(m2 / 1e4, 3)} ${t("units.ha")}`;
  return `${fmt(m2, 1)} ${t("units.m2")}`;
}

/** A two-column table from [label, value] rows. */
export function kvTable(rows, cls = "kv") {
  return el("table", { class: cls }, el("tbody", {}, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))));
}

/** Bounding box [w,s,e,n] of any GeoJSON geometry. */
export function bboxOf(geometry) {
  const box = [Infinity, Infinity, -Infinity, -Infinity];
  const visit = (c) => {
    if (typeof c[0] === "number") {
      box[0] = Math.min(box[0], c[0]); box[1] = Math.min(box[1], c[1]);
      box[2] = Math.max(box[2], c[0]); box[3] = Math.max(box[3], c[1]);
    } else c.forEach(visit);
  };
  if (geometry.type === "GeometryCollection") geometry.geometries.forEach((g) => visit(g.coordinates));
  else visit(geometry.coordinates);
  return box;
}

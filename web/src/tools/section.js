// Pipeline cross-section (横断面图): sketch a line across the street, POST /api/query/section,
// and draw an SVG chart: the ground line, and each crossed pipe to scale at its elevation under
// it (round sections as circles of their diameter, W×H sections as rectangles), labelled with
// network, size, material and depth in the manner of a CJJ 61 section drawing (labels above the
// ground, leader lines down to the pipe). Pipe sizes use the vertical scale so their proportion
// to depth is true.
import { postJSON } from "../api.js";
import { t, messageOf, getLang } from "../i18n.js";
import { el, fmt, openPanel, notifyError } from "../ui.js";

const NS = "http://www.w3.org/2000/svg";
const W = 680, H = 420, M = { left: 56, right: 20, top: 150, bottom: 40 };

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Label text of one pipe: 给水 DN300 球墨铸铁 埋深1.20m. */
export function pipeLabel(p) {
  const en = getLang() === "en";
  const net = (en ? p.network : p.network_zh) || p.network || "";
  const size = p.diameter_mm ? `DN${Math.round(p.diameter_mm)}` : p.width_mm && p.height_mm ? `${Math.round(p.width_mm)}×${Math.round(p.height_mm)}` : "";
  const mat = (en ? p.material : p.material_zh) || p.material || "";
  const depth = p.depth_m != null ? `${t("section.depth")}${fmt(p.depth_m, 2)}m` : "";
  return [net, size, mat, depth].filter(Boolean).join(" ");
}

/** Elevation of the pipe centre, falling back to ground − depth. */
function centreZ(p, groundAt) {
  if (p.z_centre != null) return p.z_centre;
  const size = (p.diameter_mm || p.height_mm || 0) / 1000;
  const g = p.ground_z ?? groundAt(p.distance_m) ?? 0;
  if (p.z_top != null) return p.z_top - size / 2;
  if (p.z_bottom != null) return p.z_bottom + size / 2;
  return p.depth_m != null ? g - p.depth_m - size / 2 : null;
}

/** Build the cross-section SVG element from a section response. */
export function sectionChart(res) {
  const ground = (res.ground || []).filter((g) => g.z != null);
  const groundAt = (d) => {
    if (!ground.length) return null;
    let best = ground[0];
    for (const g of ground) if (Math.abs(g.distance_m - d) < Math.abs(best.distance_m - d)) best = g;
    return best.z;
  };
  const pipes = (res.pipes || []).map((p) => ({ ...p, zc: centreZ(p, groundAt) })).filter((p) => p.zc != null);
  const sizeOf = (p) => ({ w: (p.diameter_mm || p.width_mm || 100) / 1000, h: (p.diameter_mm || p.height_mm || 100) / 1000 });
  const zs = [...ground.map((g) => g.z), ...pipes.map((p) => p.ground_z).filter((z) => z != null),
    ...pipes.map((p) => p.zc - sizeOf(p).h / 2), ...pipes.map((p) => p.zc + sizeOf(p).h / 2)];
  const zMin = Math.min(...zs) - 0.5, zMax = Math.max(...zs) + 0.3;
  const length = res.length_m || Math.max(1, ...pipes.map((p) => p.distance_m));
  const kx = (W - M.left - M.right) / length;
  const ky = (H - M.top - M.bottom) / Math.max(zMax - zMin, 0.5);
  const X = (d) => M.left + d * kx, Y = (z) => M.top + (zMax - z) * ky;

  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "section-chart", role: "img" });
  root.append(svg("rect", { x: 0, y: 0, width: W, height: H, fill: "#fff" }));
  // Axes: elevation ticks every "nice" step, distance ticks along the bottom.
  const step = [0.2, 0.5, 1, 2, 5, 10].find((s) => (zMax - zMin) / s <= 8) || 20;
  for (let z = Math.ceil(zMin / step) * step; z <= zMax; z += step) {
    root.append(svg("line", { x1: M.left, x2: W - M.right, y1: Y(z), y2: Y(z), stroke: "#eee" }));
    root.append(svg("text", { x: M.left - 6, y: Y(z) + 4, "text-anchor": "end", class: "tick" }, fmt(z, 1)));
  }
  const dstep = [1, 2, 5, 10, 20, 50, 100, 200, 500].find((s) => length / s <= 8) || 1000;
  for (let d = 0; d <= length + 1e-9; d += dstep) {
    root.append(svg("text", { x: X(d), y: H - M.bottom + 16, "text-anchor": "middle", class: "tick" }, fmt(d, 0)));
  }
  root.append(svg("text", { x: W / 2, y: H - 6, "text-anchor": "middle", class: "axis" }, t("section.distance")));
  root.append(svg("text", { x: 12, y: M.top + 40, transform: `rotate(-90 12 ${M.top + 40})`, class: "axis" }, t("section.elevation")));
  // Ground line.
  const gpts = ground.length ? ground : pipes.filter((p) => p.ground_z != null).map((p) => ({ distance_m: p.distance_m, z: p.ground_z }));
  if (gpts.length) {
    const d = gpts.map((g, i) => `${i ? "L" : "M"}${X(g.distance_m).toFixed(1)},${Y(g.z).toFixed(1)}`).join(" ");
    root.append(svg("path", { d, fill: "none", stroke: "#6b4f2a", "stroke-width": 2, class: "ground" }));
    root.append(svg("text", { x: W - M.right, y: Y(gpts.at(-1).z) - 4, "text-anchor": "end", class: "tick" }, t("section.ground")));
  }
  // Pipes, to scale, with labels above the ground and leaders.
  pipes.sort((a, b) => a.distance_m - b.distance_m);
  let lastLabelX = -Infinity;
  for (const p of pipes) {
    const { w, h } = sizeOf(p);
    const cx = X(p.distance_m), cy = Y(p.zc);
    const color = p.color || "#333";
    const shape = p.diameter_mm
      ? svg("circle", { cx, cy, r: Math.max(1.5, (w / 2) * ky), fill: color, "fill-opacity": 0.6, stroke: color, "stroke-width": 1.5 })
      : svg("rect", { x: cx - (w / 2) * ky, y: cy - (h / 2) * ky, width: Math.max(2, w * ky), height: Math.max(2, h * ky),
        fill: color, "fill-opacity": 0.6, stroke: color, "stroke-width": 1.5 });
    shape.setAttribute("class", "pipe");
    shape.dataset.id = String(p.id);
    shape.dataset.network = p.network || "";
    const lx = Math.max(cx, lastLabelX + 14);
    lastLabelX = lx;
    root.append(svg("polyline", { points: `${cx},${cy} ${cx},${M.top - 6} ${lx},${M.top - 14}`, fill: "none", stroke: "#999", "stroke-width": 0.8 }));
    root.append(svg("text", { x: lx, y: M.top - 18, transform: `rotate(-60 ${lx} ${M.top - 18})`, class: "pipe-label" }, pipeLabel(p)));
    root.append(shape);
  }
  return root;
}

/** The cross-section tool: sketch a line, query the section, show the chart in the panel. */
export async function sectionTool(draw) {
  const line = await draw.start("line");
  if (!line) return;
  openPanel("section", t("section.title"), el("p", {}, "…"));
  try {
    const res = await postJSON("/api/query/section", { line }, { what: "POST /api/query/section" });
    const content = res?.pipes?.length ? [sectionChart(res)] : [el("p", {}, t("section.none"))];
    const rows = (res?.pipes || []).map((p) => el("tr", {}, el("td", {}, fmt(p.distance_m, 2)), el("td", {}, pipeLabel(p))));
    if (rows.length) content.push(el("table", { class: "kv section-table" }, el("tbody", {}, rows)));
    openPanel("section", `${t("section.title")}（${fmt(res?.length_m || 0, 1)} m）`, ...content);
  } catch (err) {
    openPanel("section", t("section.title"), el("p", { class: "error" }, messageOf(err)));
    notifyError(err);
  }
}

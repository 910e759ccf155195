// Charts of the 隐患台账 panel from GET /api/hazards/stats: entries by status (bars, overdue
// stacked apart), by risk level (pie in the level colours) and by facility type (bars). Only
// the ECharts parts used here are registered; this module is loaded when the panel first
// draws its charts, so the map's first load carries no chart code.
import * as echarts from "echarts/core";
import { BarChart, PieChart } from "echarts/charts";
import { GridComponent, TooltipComponent, LegendComponent } from "echarts/components";
import { CanvasRenderer } from "echarts/renderers";

echarts.use([BarChart, PieChart, GridComponent, TooltipComponent, LegendComponent, CanvasRenderer]);

const charts = new Map();

function chart(node) {
  const old = charts.get(node.id);
  if (old && old.getDom() === node) return old;
  if (old) old.dispose();
  const c = echarts.init(node, null, { renderer: "canvas" });
  charts.set(node.id, c);
  return c;
}

function bars(node, title, rows, colour) {
  chart(node).setOption({
    animation: false,
    title: undefined,
    tooltip: { trigger: "axis" },
    grid: { left: 8, right: 8, top: 24, bottom: 4, containLabel: true },
    xAxis: { type: "category", data: rows.map((r) => r.name), axisLabel: { interval: 0, rotate: rows.length > 4 ? 30 : 0, fontSize: 11 } },
    yAxis: { type: "value", minInterval: 1 },
    legend: { show: true, top: 0, data: [title] },
    series: [{ name: title, type: "bar", data: rows.map((r) => ({ value: r.value, itemStyle: { color: r.colour || colour } })),
      label: { show: true, position: "top" } }],
  }, true);
}

/**
 * Draw the three charts into the given nodes. `stats` is the /api/hazards/stats answer;
 * `labels` gives the current language's label of a code ({status, level, type} → fn(code)).
 */
export function drawCharts(nodes, stats, labels, titles) {
  const byStatus = Object.entries(stats.by_status || {}).map(([code, v]) => ({ name: labels.status(code), value: v.count }));
  bars(nodes.status, titles.status, byStatus, "#5470c6");
  const levels = Object.entries(stats.by_risk_level || {}).map(([code, v]) => ({ name: labels.level(code), value: v.count, colour: labels.hex(code) }));
  chart(nodes.level).setOption({
    animation: false,
    tooltip: { trigger: "item", formatter: "{b}: {c} ({d}%)" },
    legend: { top: 0, type: "scroll" },
    series: [{ name: titles.level, type: "pie", radius: ["30%", "65%"], center: ["50%", "58%"],
      data: levels.map((l) => ({ name: l.name, value: l.value, itemStyle: { color: l.colour } })),
      label: { formatter: "{b} {c}" } }],
  }, true);
  const byType = Object.entries(stats.by_facility_type || {}).map(([code, v]) => ({ name: labels.type(code), value: v.count }));
  bars(nodes.type, titles.type, byType, "#91cc75");
  return { status: byStatus, level: levels, type: byType };
}

/** Release the chart instances (panel closed or redrawn elsewhere). */
export function disposeCharts() {
  for (const c of charts.values()) c.dispose();
  charts.clear();
}

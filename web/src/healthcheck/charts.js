// Charts of the health-check panel (ECharts, only the bar and line charts and the components
// they use, so the chunk stays small). Loaded on demand by panel.js the first time it draws.
import * as echarts from "echarts/core";
import { BarChart, LineChart } from "echarts/charts";
import { GridComponent, TooltipComponent, MarkLineComponent, LegendComponent } from "echarts/components";
import { CanvasRenderer } from "echarts/renderers";
import { getLang } from "../i18n.js";

echarts.use([BarChart, LineChart, GridComponent, TooltipComponent, MarkLineComponent, LegendComponent, CanvasRenderer]);

const label = (obj, base = "name") => (getLang() === "en" ? obj?.[`${base}_en`] : obj?.[`${base}_zh`]) || obj?.[`${base}_zh`] || "";

function chartOn(node) {
  const chart = echarts.getInstanceByDom(node) || echarts.init(node, null, { renderer: "canvas" });
  chart.clear();
  return chart;
}

function thresholdLine(def, year) {
  const t = def?.threshold;
  if (!t) return undefined;
  const value = t.by_year?.[year] ?? t.value;
  return { silent: true, symbol: "none", lineStyle: { color: "#b00020", type: "dashed" },
    label: { formatter: `${t.op} ${value}` }, data: [{ yAxis: value }] };
}

/** Bar chart of the areas' values, best first, each bar in its class colour; click → onPick(code). */
export function bar(node, rows, def, onPick) {
  const chart = chartOn(node);
  chart.setOption({
    animation: false,
    grid: { left: 48, right: 16, top: 24, bottom: 64 },
    tooltip: { trigger: "axis" },
    xAxis: { type: "category", data: rows.map((r) => r.area_name || r.area_code), axisLabel: { rotate: 40, fontSize: 10 } },
    yAxis: { type: "value", name: def?.unit || "" },
    series: [{ type: "bar", name: label(def), data: rows.map((r) => ({ value: r.value, code: r.area_code, itemStyle: { color: r.color || "#6baed6" } })),
      markLine: thresholdLine(def) }],
  });
  chart.off("click");
  chart.on("click", (p) => p.data?.code && onPick(p.data.code));
  node.dataset.bars = String(rows.length);
  return chart;
}

/** Line chart of the values per run year, one line per area. */
export function trend(node, years, series, def) {
  const chart = chartOn(node);
  chart.setOption({
    animation: false,
    grid: { left: 48, right: 16, top: 30, bottom: 28 },
    tooltip: { trigger: "axis" },
    legend: { type: "scroll", top: 0, textStyle: { fontSize: 10 } },
    xAxis: { type: "category", data: years.map(String) },
    yAxis: { type: "value", name: def?.unit || "" },
    series: series.map((s, i) => ({ type: "line", name: s.name, connectNulls: false, data: years.map((y) => s.points.get(y) ?? null),
      markLine: i === 0 ? thresholdLine(def, years.at(-1)) : undefined })),
  });
  node.dataset.years = years.join(",");
  node.dataset.lines = String(series.length);
  return chart;
}

// Measuring distance and area on the CGCS2000 ellipsoid (geodesic, GeographicLib) while the
// user sketches; the result stays in the panel after the sketch is finished.
import { geodesicLength, geodesicArea } from "../geo.js";
import { t } from "../i18n.js";
import { el, fmtLength, fmtArea, openPanel } from "../ui.js";

/** Text of a measurement of a sketched geometry. */
export function describe(geometry) {
  if (geometry.type === "LineString") return t("measure.distance", { v: fmtLength(geodesicLength(geometry.coordinates)) });
  const { area, perimeter } = geodesicArea(geometry.coordinates[0]);
  return `${t("measure.area", { v: fmtArea(area) })}  ·  ${t("measure.distance", { v: fmtLength(perimeter) })}`;
}

/** Run one measurement: "distance" sketches a line, "area" a polygon. */
export async function measure(draw, mode) {
  const kind = mode === "area" ? "polygon" : "line";
  const title = t(mode === "area" ? "tool.area" : "tool.distance");
  const out = el("div", { class: "measure-result", id: "measure-result" }, "…");
  openPanel("measure", title, out);
  const geometry = await draw.start(kind, (g) => { out.textContent = describe(g); });
  if (geometry) out.textContent = describe(geometry);
  return geometry;
}

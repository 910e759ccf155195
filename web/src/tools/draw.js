// Sketching a line or a polygon on the 2D map: click adds a vertex, the cursor drags a rubber
// band, double-click finishes, Esc cancels. Used by measure, statistics and cross-section.
import { t } from "../i18n.js";

const SOURCE = "cim-draw";

function ensureLayers(map) {
  if (map.getSource(SOURCE)) return;
  map.addSource(SOURCE, { type: "geojson", data: { type: "FeatureCollection", features: [] } });
  map.addLayer({ id: "cim-draw-fill", type: "fill", source: SOURCE, filter: ["==", ["geometry-type"], "Polygon"],
    paint: { "fill-color": "#ff7a00", "fill-opacity": 0.15 } });
  map.addLayer({ id: "cim-draw-line", type: "line", source: SOURCE, filter: ["!=", ["geometry-type"], "Point"],
    paint: { "line-color": "#ff7a00", "line-width": 2.5, "line-dasharray": [2, 1] } });
  map.addLayer({ id: "cim-draw-vertex", type: "circle", source: SOURCE, filter: ["==", ["geometry-type"], "Point"],
    paint: { "circle-radius": 4, "circle-color": "#fff", "circle-stroke-color": "#ff7a00", "circle-stroke-width": 2 } });
}

/** GeoJSON geometry of a sketch: a LineString, or a closed Polygon ring. */
export function sketchGeometry(kind, coords) {
  if (kind === "polygon") return { type: "Polygon", coordinates: [[...coords, coords[0]]] };
  return { type: "LineString", coordinates: coords };
}

/** One sketch session at a time on a map. */
export class Draw {
  constructor(map) {
    this.map = map;
    this.active = null;
  }

  /** Remove the sketch from the map. */
  clear() {
    this.map.getSource(SOURCE)?.setData({ type: "FeatureCollection", features: [] });
  }

  /** Cancel the running sketch, if any (its promise resolves to null). */
  cancel() {
    this.active?.finish(null);
  }

  /**
   * Sketch a "line" or "polygon". onChange(geometry) runs on every vertex and cursor move.
   * Resolves to the finished GeoJSON geometry, or null when cancelled.
   */
  start(kind, onChange = () => {}) {
    this.cancel();
    ensureLayers(this.map);
    const map = this.map;
    const coords = [];
    let cursor = null;
    const hint = document.getElementById("tool-hint");
    hint.textContent = t(kind === "polygon" ? "tool.hint.polygon" : "tool.hint.line");
    hint.hidden = false;
    map.doubleClickZoom.disable();
    map.getCanvas().style.cursor = "crosshair";

    const redraw = () => {
      const pts = cursor ? [...coords, cursor] : coords;
      const features = pts.map((c) => ({ type: "Feature", geometry: { type: "Point", coordinates: c } }));
      const min = kind === "polygon" ? 3 : 2;
      if (pts.length >= 2) features.push({ type: "Feature", geometry: pts.length >= min ? sketchGeometry(kind, pts) : sketchGeometry("line", pts) });
      map.getSource(SOURCE).setData({ type: "FeatureCollection", features });
      if (pts.length >= min) onChange(sketchGeometry(kind, pts));
    };
    const click = (e) => {
      const p = [e.lngLat.lng, e.lngLat.lat];
      const last = coords.at(-1);
      if (!last || last[0] !== p[0] || last[1] !== p[1]) coords.push(p);
      redraw();
    };
    const move = (e) => { if (coords.length) { cursor = [e.lngLat.lng, e.lngLat.lat]; redraw(); } };
    const dbl = (e) => {
      e.preventDefault();
      cursor = null;
      const ok = coords.length >= (kind === "polygon" ? 3 : 2);
      redraw();
      session.finish(ok ? sketchGeometry(kind, coords) : null);
    };
    const key = (e) => { if (e.key === "Escape") { this.clear(); session.finish(null); } };

    let resolve;
    const promise = new Promise((r) => { resolve = r; });
    const session = {
      finish: (geometry) => {
        map.off("click", click); map.off("mousemove", move); map.off("dblclick", dbl);
        document.removeEventListener("keydown", key);
        map.getCanvas().style.cursor = "";
        hint.hidden = true;
        setTimeout(() => map.doubleClickZoom.enable(), 0);
        this.active = null;
        resolve(geometry);
      },
    };
    map.on("click", click); map.on("mousemove", move); map.on("dblclick", dbl);
    document.addEventListener("keydown", key);
    this.active = session;
    return promise;
  }
}

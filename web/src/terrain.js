// The ground of the 3D view: a CesiumJS heightmap terrain whose tiles come from
// GET /api/dem/heights/{level}/{x}/{y}, where every point stands on the DEM of the county whose
// area holds it — the ground the 3D Tiles placed that county's features on (docs/tiers.md "DEMs of
// several counties"). Heights are the DEMs' values taken as heights above the ellipsoid, exactly
// as the 3D Tiles write theirs (docs/3dtiles.md "Heights"), so terrain and tiles share one
// vertical reference and no tileset is lowered. Tiles outside every DEM are the flat ellipsoid,
// made here without a request.
import { getBuffer } from "./api.js";
import { t } from "./i18n.js";
import { notify } from "./ui.js";

/** Samples per heightmap tile side (CesiumJS's own heightmap terrain uses 65). */
export const GRID = 65;

/** Terrain of the current DEMs (`dems`: the `dems` list of GET /api/dem). */
export function demTerrain(Cesium, dems) {
  const scheme = new Cesium.GeographicTilingScheme();
  const boxes = dems.map((d) => Cesium.Rectangle.fromDegrees(...d.bounds));
  const flat = () => new Float32Array(GRID * GRID);
  let warned = false;
  return new Cesium.CustomHeightmapTerrainProvider({
    width: GRID,
    height: GRID,
    tilingScheme: scheme,
    callback: (x, y, level) => {
      const rect = scheme.tileXYToRectangle(x, y, level);
      if (!boxes.some((box) => Cesium.Rectangle.intersection(rect, box))) return flat();
      return getBuffer(`/api/dem/heights/${level}/${x}/${y}?size=${GRID}`, { what: "GET /api/dem/heights" })
        .then((buffer) => new Float32Array(buffer))
        .catch((err) => {
          // drawn flat rather than left out, so the globe stays whole; said once per page
          if (!warned) notify(`${t("view.terrainMissing")}: ${err.message_zh || err.message}`, "error", 9000);
          warned = true;
          return flat();
        });
    },
  });
}

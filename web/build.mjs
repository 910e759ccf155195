// Build the web map into web/dist: an esbuild bundle of src/main.js (MapLibre GL JS included; parts
// imported with import() become chunks under dist/chunks, fetched when first used),
// the page, the CSS, MapLibre's CSS and CesiumJS's prebuilt files (Cesium.js, Workers, Assets,
// ThirdParty, Widgets) copied from node_modules. Nothing is fetched from the internet at run
// time: CesiumJS loads its workers and assets from ./cesium/ (CESIUM_BASE_URL set in map3d.js).
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync, copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const cesiumBuild = join(here, "node_modules", "cesium", "Build", "Cesium");
const watch = process.argv.includes("--dev");

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

const result = await build({
  entryPoints: [join(here, "src", "main.js")],
  bundle: true,
  format: "esm",
  splitting: true, // modules imported on demand (charts) become chunks loaded when first needed
  target: ["es2020"],
  minify: !watch,
  sourcemap: true,
  metafile: true,
  outdir: dist,
  entryNames: "app",
  chunkNames: "chunks/[name]-[hash]",
  logLevel: "warning",
  legalComments: "linked",
});

copyFileSync(join(here, "src", "app.css"), join(dist, "app.css"));
copyFileSync(join(here, "favicon.svg"), join(dist, "favicon.svg"));
copyFileSync(join(here, "node_modules", "maplibre-gl", "dist", "maplibre-gl.css"), join(dist, "maplibre-gl.css"));

// The page: stamp asset URLs with the build time so browsers never mix an old app.js with new HTML.
const stamp = Date.now().toString(36);
const html = readFileSync(join(here, "index.html"), "utf8").replaceAll("__BUILD__", stamp);
writeFileSync(join(dist, "index.html"), html);

// CesiumJS: the prebuilt IIFE bundle plus the static folders it loads at run time.
mkdirSync(join(dist, "cesium"), { recursive: true });
copyFileSync(join(cesiumBuild, "Cesium.js"), join(dist, "cesium", "Cesium.js"));
for (const folder of ["Workers", "Assets", "ThirdParty", "Widgets"]) {
  cpSync(join(cesiumBuild, folder), join(dist, "cesium", folder), { recursive: true });
}

const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
console.log(`web/dist built: app.js and maps ${(bytes / 1024).toFixed(0)} KiB, CesiumJS copied`);

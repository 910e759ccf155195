// The 3D view: CesiumJS (its prebuilt bundle, loaded from ./cesium/ on first use) with the
// buildings and pipelines 3D Tiles of the API. Offline by design: no Cesium ion token, no
// default imagery or terrain from the internet. With DEMs loaded the globe is our own terrain
// (terrain.js: each county's area on its own DEM) and the tilesets stand on it as built; without
// any DEM it is the bare WGS84/CGCS2000 ellipsoid and the tilesets are lowered onto it. Our DEM
// hillshade shades it. An underground mode makes the ground translucent (globe.translucency) so
// pipes below the surface show. Switching 2D ↔ 3D carries centre, zoom ↔ camera range, bearing
// and pitch.
import { getJSON, layerCatalog } from "./api.js";
import { t, pick } from "./i18n.js";
import { el, notify, notifyError, openPanel } from "./ui.js";
import { attributeRows, metresPerPixel } from "./identify.js";
import { absolute, BASEMAP_KEY } from "./map2d.js";
import { demTerrain } from "./terrain.js";

/** Terrain level sampled for the ground under the camera target (a few metres per sample). */
const TARGET_LEVEL = 16;

export const TILESETS = [
  { name: "buildings", url: "/3dtiles/buildings/tileset.json", layer: "buildings" },
  { name: "pipelines", url: "/3dtiles/pipelines/tileset.json", layer: "pipeline_segments" },
];

let cesiumPromise = null;

/** Load CesiumJS once, with CESIUM_BASE_URL pointing at our own copy of its assets. */
export function loadCesium() {
  if (!cesiumPromise) {
    window.CESIUM_BASE_URL = absolute("cesium/");
    cesiumPromise = new Promise((resolve, reject) => {
      const s = el("script", { src: "cesium/Cesium.js" });
      s.onload = () => resolve(window.Cesium);
      s.onerror = () => reject(new Error("CesiumJS could not be loaded"));
      document.head.append(s);
    });
    const css = el("link", { rel: "stylesheet", href: "cesium/Widgets/widgets.css" });
    document.head.append(css);
  }
  return cesiumPromise;
}

/** The 3D view; created lazily by View3D.open(). */
export class View3D {
  constructor() {
    this.viewer = null;
    this.tilesets = {};
    this.status = {};
    this.selected = null;
  }

  /**
   * Create the viewer (first call) and place the camera at the 2D view; tilesets load in the
   * background (`this.loading`). Resolves once the camera is set.
   */
  async open(view, heightPx) {
    if (!this.viewer) {
      const Cesium = await loadCesium();
      this.Cesium = Cesium;
      Cesium.Ion.defaultAccessToken = "";
      this.dem = await getJSON("/api/dem").catch((err) => {
        if (!err.unavailable) notifyError(err);
        return null;
      });
      // Real ground where DEMs are loaded; without any, the bare ellipsoid.
      this.terrain = this.dem?.loaded && this.dem.dems?.length ? demTerrain(Cesium, this.dem.dems) : null;
      const viewer = new Cesium.Viewer("globe", {
        baseLayer: false, baseLayerPicker: false, geocoder: false, homeButton: false, sceneModePicker: false,
        navigationHelpButton: false, animation: false, timeline: false, fullscreenButton: false, infoBox: false,
        selectionIndicator: false, terrainProvider: this.terrain || new Cesium.EllipsoidTerrainProvider(), shadows: false,
      });
      viewer.scene.globe.baseColor = Cesium.Color.fromCssColorString("#d9d6cc");
      viewer.scene.globe.depthTestAgainstTerrain = true;
      viewer.scene.skyBox.show = false;
      viewer.scene.backgroundColor = Cesium.Color.fromCssColorString("#cfe0ee");
      this.viewer = viewer;
      this.setupPicking();
      // Buildings first: their bases give the ground level the pipes are placed under.
      this.loading = this.addImagery().then(async () => { for (const ts of TILESETS) await this.loadTileset(ts); });
    }
    this.viewer.resize();
    if (view) await this.setView(view, heightPx);
    return this.viewer;
  }

  /** Our own imagery only: the DEM hillshade and the user's basemap URL, when configured. */
  async addImagery() {
    const { Cesium, viewer } = this;
    const custom = localStorage.getItem(BASEMAP_KEY);
    if (custom) viewer.imageryLayers.addImageryProvider(new Cesium.UrlTemplateImageryProvider({ url: absolute(custom), maximumLevel: 19 }));
    const dem = this.dem;
    if (dem?.loaded) {
      const opts = { url: absolute("/tiles/hillshade/{z}/{x}/{y}.png"), maximumLevel: 18 };
      if (dem.bounds) opts.rectangle = Cesium.Rectangle.fromDegrees(...dem.bounds);
      const layer = viewer.imageryLayers.addImageryProvider(new Cesium.UrlTemplateImageryProvider(opts));
      layer.alpha = 0.6;
    }
  }

  async loadTileset({ name, url }) {
    const { Cesium, viewer } = this;
    try {
      const tileset = await Cesium.Cesium3DTileset.fromUrl(absolute(url), { maximumScreenSpaceError: 8 });
      this.tilesets[name] = tileset;
      if (this.visibleLayers) tileset.show = this.visibleLayers.has(TILESETS.find((x) => x.name === name).layer);
      this.placeOnGround(tileset);
      viewer.scene.primitives.add(tileset);
      this.status[name] = "loaded";
      notify(t("view.tilesetLoaded", { name }), "ok", 3000);
    } catch (err) {
      this.status[name] = "missing";
      console.warn(`tileset ${name}`, err);
      notify(t("view.tilesetMissing", { name }), "error", 9000);
    }
  }

  /** Show the tilesets whose catalogue layer is switched on in the 2D layer tree. */
  syncVisibility(visibleLayers) {
    this.visibleLayers = new Set(visibleLayers);
    for (const ts of TILESETS) if (this.tilesets[ts.name]) this.tilesets[ts.name].show = this.visibleLayers.has(ts.layer);
    this.viewer?.scene.requestRender();
  }

  /**
   * The tiles carry orthometric heights (1985 datum) written as heights above the ellipsoid, each
   * feature on its own county's ground. On our terrain (DEMs loaded) that is the ground drawn, so
   * the tilesets stay where they are: every county stands on its own DEM and, where no DEM covers
   * a place, on the ellipsoid. Without any DEM the globe is the bare ellipsoid at height 0, and
   * every tileset is lowered by the lowest building base (the buildings tileset's region) so the
   * model's ground meets the globe and the pipes lie below it.
   */
  placeOnGround(tileset) {
    const C = this.Cesium;
    if (this.terrain) return;
    if (this.groundLevel === undefined) {
      // TileBoundingRegion of the root: buildings stand on the ground (their lowest base), pipes
      // lie under it (their highest top is just below the ground).
      const bv = tileset.root?.boundingVolume;
      const fromTiles = tileset === this.tilesets.buildings || !this.tilesets.buildings ? bv?.minimumHeight : bv?.maximumHeight;
      this.groundLevel = Number.isFinite(fromTiles) ? fromTiles : 0;
    }
    if (!this.groundLevel) return;
    const carto = C.Cartographic.fromCartesian(tileset.boundingSphere.center);
    const surface = C.Cartesian3.fromRadians(carto.longitude, carto.latitude, 0);
    const lowered = C.Cartesian3.fromRadians(carto.longitude, carto.latitude, -this.groundLevel);
    tileset.modelMatrix = C.Matrix4.fromTranslation(C.Cartesian3.subtract(lowered, surface, new C.Cartesian3()));
  }

  /** Identify on click: the picked feature's properties from the tile's metadata. */
  setupPicking() {
    const { Cesium, viewer } = this;
    const handler = new Cesium.ScreenSpaceEventHandler(viewer.scene.canvas);
    // The picked feature gets a yellow silhouette (tinting it would mix with its network colour:
    // cyan × yellow reads as green, the colour of another network).
    let edge = null;
    if (Cesium.PostProcessStageLibrary.isSilhouetteSupported(viewer.scene)) {
      edge = Cesium.PostProcessStageLibrary.createEdgeDetectionStage();
      edge.uniforms.color = Cesium.Color.YELLOW;
      edge.uniforms.length = 0.01;
      edge.selected = [];
      viewer.scene.postProcessStages.add(Cesium.PostProcessStageLibrary.createSilhouetteStage([edge]));
    }
    handler.setInputAction(async (click) => {
      if (edge) edge.selected = [];
      const picked = viewer.scene.pick(click.position);
      if (!(picked instanceof Cesium.Cesium3DTileFeature)) return;
      if (edge) edge.selected = [picked];
      this.selected = picked;
      const props = {};
      for (const id of picked.getPropertyIds()) props[id] = picked.getProperty(id);
      const ts = TILESETS.find((x) => this.tilesets[x.name] === picked.tileset);
      await this.showProperties(ts, props);
    }, Cesium.ScreenSpaceEventType.LEFT_CLICK);
  }

  async showProperties(ts, props) {
    const catalog = await layerCatalog().catch(() => new Map());
    const spec = catalog.get(ts?.layer);
    const rows = await attributeRows(spec, props);
    const table = el("table", { class: "kv", id: "identify3d" }, el("tbody", {}, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))));
    openPanel("identify3d", `${t("identify.title")} · ${spec ? pick(spec, "title") : ts?.name || ""}`, table);
  }

  /** Underground mode: translucent ground, camera allowed below the surface. */
  setUnderground(on, alpha) {
    const { viewer } = this;
    if (!viewer) return;
    const globe = viewer.scene.globe;
    globe.translucency.enabled = on;
    globe.translucency.frontFaceAlpha = on ? alpha : 1;
    globe.translucency.backFaceAlpha = on ? alpha : 1;
    globe.depthTestAgainstTerrain = !on;
    viewer.scene.screenSpaceCameraController.enableCollisionDetection = !on;
    viewer.scene.requestRender();
  }

  /** Height of the ground drawn at lon/lat (degrees): the terrain's, 0 on the bare ellipsoid. */
  async groundHeight(lon, lat) {
    if (!this.terrain) return 0;
    const [p] = await this.Cesium.sampleTerrain(this.terrain, TARGET_LEVEL, [this.Cesium.Cartographic.fromDegrees(lon, lat)]);
    return Number.isFinite(p.height) ? p.height : 0;
  }

  /** Place the camera to show what the 2D view {center, zoom, bearing, pitch} showed, looking at the ground. */
  async setView({ center, zoom, bearing, pitch }, heightPx) {
    const { Cesium, viewer } = this;
    const fovy = viewer.camera.frustum.fovy;
    const range = (metresPerPixel(center[1], zoom) * heightPx) / 2 / Math.tan(fovy / 2);
    const target = Cesium.Cartesian3.fromDegrees(center[0], center[1], await this.groundHeight(center[0], center[1]));
    viewer.camera.lookAt(target, new Cesium.HeadingPitchRange(Cesium.Math.toRadians(bearing), Cesium.Math.toRadians(pitch - 90), range));
    viewer.camera.lookAtTransform(Cesium.Matrix4.IDENTITY);
  }

  /** The 2D equivalent of the camera: {center, zoom, bearing, pitch}. */
  getView(heightPx) {
    const { Cesium, viewer } = this;
    const scene = viewer.scene;
    const camera = viewer.camera;
    const mid = new Cesium.Cartesian2(scene.canvas.clientWidth / 2, scene.canvas.clientHeight / 2);
    // On terrain the target is the ground drawn under the centre (as setView placed it). On the
    // bare ellipsoid, intersect the ray with it exactly rather than picking the globe's tiles,
    // whose coarse levels lie below it.
    const ray = camera.getPickRay(mid);
    let target = ray && this.terrain ? scene.globe.pick(ray, scene) : undefined;
    if (!target && ray) {
      const hit = Cesium.IntersectionTests.rayEllipsoid(ray, scene.globe.ellipsoid);
      target = hit ? Cesium.Ray.getPoint(ray, hit.start) : undefined;
    }
    const carto = Cesium.Cartographic.fromCartesian(target || camera.positionWC);
    const lat = Cesium.Math.toDegrees(carto.latitude);
    const range = target ? Cesium.Cartesian3.distance(camera.positionWC, target) : Math.max(carto.height, 10);
    const mpp = (2 * range * Math.tan(camera.frustum.fovy / 2)) / heightPx;
    const zoom = Math.log2((40075016.686 * Math.cos((lat * Math.PI) / 180)) / mpp) - 9;
    return {
      center: [Cesium.Math.toDegrees(carto.longitude), lat],
      zoom: Math.min(22, Math.max(0, zoom)),
      bearing: Cesium.Math.toDegrees(camera.heading),
      pitch: Math.min(75, Math.max(0, 90 + Cesium.Math.toDegrees(camera.pitch))),
    };
  }
}

// Interface language: Chinese (zh-CN) by default, English on request. Static text in the page
// carries data-i18n / data-i18n-placeholder / data-i18n-title keys; modules call t(key, vars)
// and listen for language changes with onLangChange. The choice is kept in localStorage.

const STRINGS = {
  "app.title": ["CIM 一张图", "CIM One Map"],
  "search.placeholder": ["搜索编号、名称、地址、物探点号", "Search code, name, address, survey point no."],
  "search.none": ["没有找到", "Nothing found"],
  "admin.pick": ["行政区划", "Admin area"],
  "tool.identify": ["查询", "Identify"],
  "tool.distance": ["测距", "Distance"],
  "tool.area": ["测面", "Area"],
  "tool.stats": ["统计", "Statistics"],
  "tool.section": ["横断面", "Cross-section"],
  "tool.export": ["导出", "Export"],
  "tool.hint.line": ["单击添加节点，双击结束，Esc 取消", "Click to add vertices, double-click to finish, Esc to cancel"],
  "tool.hint.polygon": ["单击添加顶点，双击闭合，Esc 取消", "Click to add vertices, double-click to close, Esc to cancel"],
  "view.to3d": ["三维", "3D"],
  "view.to2d": ["二维", "2D"],
  "view.underground": ["地下模式", "Underground"],
  "view.globeAlpha": ["地表透明度", "Ground opacity"],
  "view.loading3d": ["正在加载三维场景…", "Loading the 3D scene…"],
  "view.tilesetMissing": ["三维瓦片未发布：{name}", "3D tiles not published: {name}"],
  "view.terrainMissing": ["地形高程读取失败，该处按椭球面绘制", "Terrain heights could not be read; drawn on the ellipsoid there"],
  "view.tilesetLoaded": ["已加载三维图层：{name}", "3D layer loaded: {name}"],
  "upload.open": ["数据上传", "Upload"],
  "tiers.open": ["下级平台", "Lower tiers"],
  "tiers.title": ["下级平台运行状态", "Lower-tier running status"],
  "tiers.loading": ["正在读取下级平台状态…", "Reading the lower-tier status…"],
  "tiers.self": ["本平台：{name}（{code}，{level}）", "This platform: {name} ({code}, {level})"],
  "tiers.noIdentity": ["本平台尚未设置级联身份（cim tier init）", "This platform has no tier identity (cim tier init)"],
  "tiers.none": ["没有下级平台", "No lower-tier platforms"],
  "tiers.green": ["正常", "OK"],
  "tiers.amber": ["注意", "Warning"],
  "tiers.red": ["异常", "Down"],
  "tiers.ok": ["运行正常，数据同步及时", "Running, replication current"],
  "tiers.zoom": ["缩放到该区县", "Zoom to this county"],
  "tiers.seconds": ["{n} 秒前", "{n} s ago"],
  "tiers.minutes": ["{n} 分钟前", "{n} min ago"],
  "tiers.hours": ["{n} 小时前", "{n} h ago"],
  "tiers.secondsShort": ["{n} 秒", "{n} s"],
  "tiers.col.status": ["状态", "Status"],
  "tiers.col.platform": ["平台", "Platform"],
  "tiers.col.heartbeat": ["最近心跳", "Last heartbeat"],
  "tiers.col.lag": ["同步延迟", "Lag"],
  "tiers.col.delivery": ["最近入库", "Last delivery"],
  "tiers.col.versions": ["数据版本", "Data version"],
  "tiers.col.software": ["软件版本", "Software"],
  "tiers.thresholds": ["心跳超过 {amber} 秒为注意、{red} 秒为异常；同步延迟超过 {lagAmber} 秒为注意、{lagRed} 秒为异常",
    "Heartbeat older than {amber} s: warning, {red} s: down; replication lag over {lagAmber} s: warning, {lagRed} s: down"],
  "healthcheck.open": ["城市体检", "Health check"],
  "settings.open": ["设置", "Settings"],
  "settings.basemap": ["自定义底图地址（XYZ 栅格，如 http://内网地址/{z}/{x}/{y}.png）", "Custom basemap URL (XYZ raster, e.g. http://intranet/{z}/{x}/{y}.png)"],
  "settings.save": ["保存", "Save"],
  "settings.saved": ["设置已保存", "Settings saved"],
  "settings.gk": ["显示高斯-克吕格坐标（CGCS2000 3° 带，中央经线 111°E）", "Show Gauss-Krüger coordinates (CGCS2000 3° zone, CM 111°E)"],
  "tree.title": ["图层", "Layers"],
  "tree.opacity": ["透明度", "Opacity"],
  "tree.basemap": ["底图", "Basemap"],
  "tree.hillshade": ["地形晕渲", "Hillshade"],
  "tree.custom": ["自定义底图", "Custom basemap"],
  "legend.title": ["图例", "Legend"],
  "group.base": ["基础地理", "Base geography"],
  "group.buildings": ["房屋建筑", "Buildings"],
  "group.pipelines": ["地下管线", "Underground pipelines"],
  "group.drainage": ["排水防涝", "Drainage"],
  "group.gas": ["燃气", "Gas"],
  "group.green": ["园林绿化", "Green space"],
  "group.lighting": ["城市照明", "Street lighting"],
  "tree.networks": ["按管线类别", "By network"],
  "legend.other": ["其他", "Other"],
  "identify.title": ["要素查询", "Identify"],
  "identify.none": ["此处没有要素", "No feature here"],
  "identify.count": ["共 {n} 个要素", "{n} features"],
  "stats.title": ["区域统计", "Area statistics"],
  "stats.byAdmin": ["统计所选行政区：{name}", "Statistics of the chosen area: {name}"],
  "stats.area": ["统计面积", "Area"],
  "stats.counts": ["要素数量", "Feature counts"],
  "stats.byNetwork": ["管线长度（按类别）", "Pipe length by network"],
  "stats.byMaterial": ["管线长度（按材质）", "Pipe length by material"],
  "stats.byDiameter": ["管线长度（按管径）", "Pipe length by diameter class"],
  "stats.green": ["绿地面积（按类别）", "Green area by class"],
  "stats.buildings": ["建筑面积（按用途）", "Building floor area by use"],
  "section.title": ["管线横断面", "Pipeline cross-section"],
  "section.none": ["断面线未穿过任何管线", "The section line crosses no pipe"],
  "section.ground": ["地面线", "Ground"],
  "section.distance": ["距离 (m)", "Distance (m)"],
  "section.elevation": ["高程 (m)", "Elevation (m)"],
  "section.depth": ["埋深", "depth"],
  "measure.distance": ["距离：{v}", "Distance: {v}"],
  "measure.area": ["面积：{v}", "Area: {v}"],
  "export.title": ["导出当前视图要素", "Export features in view"],
  "export.layer": ["图层", "Layer"],
  "export.run": ["导出 GeoJSON", "Export GeoJSON"],
  "export.progress": ["已获取 {n} 个要素…", "{n} features fetched…"],
  "export.done": ["已导出 {n} 个要素", "{n} features exported"],
  "upload.title": ["县级数据上传", "County data upload"],
  "upload.token": ["上传令牌", "Uploader token"],
  "upload.tokenHint": ["令牌只保存在本浏览器会话中", "The token is kept for this browser session only"],
  "upload.county": ["县级行政区划代码", "County code"],
  "upload.files": ["数据文件（Shapefile 各部分、zip、gpkg、xlsx…）", "Data files (shapefile parts, zip, gpkg, xlsx…)"],
  "upload.profile": ["数据规范", "Survey profile"],
  "upload.auto": ["自动识别", "Auto-detect"],
  "upload.start": ["上传并检查（不入库）", "Upload and check (dry run)"],
  "upload.state": ["状态：{s}（{p}%）", "State: {s} ({p}%)"],
  "upload.report": ["检查报告", "Validation report"],
  "upload.confirm": ["确认入库", "Confirm load"],
  "upload.cancel": ["取消", "Cancel"],
  "upload.confirmed": ["已提交入库", "Load confirmed"],
  "upload.cancelled": ["已取消", "Cancelled"],
  "upload.noFindings": ["未发现问题", "No findings"],
  "upload.needToken": ["请先输入上传令牌", "Enter an uploader token first"],
  "upload.needFiles": ["请选择文件并填写县级代码", "Choose files and enter the county code"],
  "upload.download": ["下载报告", "Download report"],
  "upload.rule": ["规则", "Rule"],
  "upload.severity": ["级别", "Severity"],
  "upload.layer": ["图层", "Layer"],
  "upload.row": ["行", "Row"],
  "upload.message": ["说明", "Message"],
  "upload.mapping": ["字段映射（可修改后重新检查）", "Field mapping (change and re-check)"],
  "upload.unmapped": ["（不导入）", "(not mapped)"],
  "upload.sourceField": ["交付字段", "Delivered field"],
  "upload.target": ["目标字段", "Target column"],
  "upload.howTitle": ["方式", "How"],
  "upload.confidence": ["可信度", "Confidence"],
  "upload.samples": ["样例值", "Samples"],
  "upload.reason": ["依据", "Reason"],
  "upload.value": ["交付值", "Delivered value"],
  "upload.code": ["代码", "Code"],
  "upload.addValue": ["新增取值映射", "Add a value mapping"],
  "upload.recheck": ["按此映射重新检查", "Re-check with this mapping"],
  "upload.how.alias": ["规范别名", "profile alias"],
  "upload.how.proposed": ["建议", "proposed"],
  "upload.how.user": ["用户指定", "user"],
  "upload.how.unmapped": ["未对应", "unmapped"],
  "upload.accepted": ["通过：无错误，可以入库（警告 {w} 项请核实；共 {g} 组）", "Accepted: no errors, ready to load ({w} warnings to check; {g} groups)"],
  "upload.rejected": ["退回：{e} 项错误、{w} 项警告（{g} 组），请先修改下列问题", "Rejected: {e} errors and {w} warnings ({g} groups); fix these first"],
  "upload.fixFirst": ["优先修改（错误在前，数量多的在前）", "What to fix first (errors first, biggest first)"],
  "upload.times": ["{n} 处", "{n} findings"],
  "upload.groups": ["问题分组（规则 × 图层 × 字段 × 值，共 {total} 组，最大的在前；点击一组定位到其范围）", "Findings grouped by rule × layer × field × value ({total} groups, biggest first; click a group to zoom to its extent)"],
  "upload.moreGroups": ["再显示 {n} 组（共 {total} 组）", "Show {n} more groups (of {total})"],
  "upload.field": ["字段", "Field"],
  "upload.count": ["数量", "Count"],
  "upload.firstRows": ["前几行（点号）", "First rows (point no.)"],
  "upload.zoomExtent": ["定位到这组问题的范围", "Zoom to this group's extent"],
  "upload.sev.error": ["错误", "error"],
  "upload.sev.warning": ["警告", "warning"],
  "upload.sev.info": ["提示", "info"],
  "state.queued": ["排队中", "queued"],
  "state.reading": ["读取中", "reading"],
  "state.validating": ["检查中", "validating"],
  "state.loading": ["入库中", "loading"],
  "state.awaiting_confirmation": ["待确认", "awaiting confirmation"],
  "state.done": ["已完成", "done"],
  "state.rejected": ["未通过", "rejected"],
  "state.failed": ["失败", "failed"],
  "state.cancelled": ["已取消", "cancelled"],
  "err.unavailable": ["服务端尚未提供此功能：{what}", "The server does not provide this yet: {what}"],
  "err.network": ["无法连接服务器", "Cannot reach the server"],
  "err.style": ["无法加载一张图样式，仅显示底图", "Could not load the one-map style; showing the basemap only"],
  "err.auth": ["需要登录或令牌无权限", "A token with the right permission is needed"],
  "panel.close": ["关闭", "Close"],
  "units.m": ["米", "m"],
  "units.km": ["千米", "km"],
  "units.m2": ["平方米", "m²"],
  "units.km2": ["平方千米", "km²"],
  "units.ha": ["公顷", "ha"],
};

const KEY = "cim.lang";
let lang = localStorage.getItem(KEY) === "en" ? "en" : "zh";
const listeners = new Set();

/** Current language: "zh" or "en". */
export function getLang() {
  return lang;
}

/** Translate a key, filling {name} placeholders from vars. Unknown keys are returned as they are. */
export function t(key, vars = {}) {
  const pair = STRINGS[key];
  let s = pair ? pair[lang === "en" ? 1 : 0] : key;
  for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}

/** Pick the right half of a {*_zh, *_en} pair (e.g. title_zh / title_en). */
export function pick(obj, base) {
  if (!obj) return "";
  return (lang === "en" ? obj[`${base}_en`] : obj[`${base}_zh`]) || obj[`${base}_zh`] || obj[`${base}_en`] || "";
}

/** Message of an API error body or an ApiError in the current language. */
export function messageOf(err) {
  if (!err) return "";
  return (lang === "en" ? err.message_en : err.message_zh) || err.message_zh || err.message_en || String(err.message || err);
}

/** Fill every tagged element under root with the current language's text. */
export function applyStatic(root = document) {
  document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
}

/** Switch language, re-render static text and tell every listener. */
export function setLang(next) {
  lang = next === "en" ? "en" : "zh";
  localStorage.setItem(KEY, lang);
  applyStatic();
  for (const fn of listeners) fn(lang);
}

/** Call fn(lang) after every language switch. */
export function onLangChange(fn) {
  listeners.add(fn);
}

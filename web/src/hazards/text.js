// Interface text of the 隐患台账 panel (Chinese first, English on request). Codes and their
// labels (statuses, sources, facility types, levels, actions, fields) come from
// GET /api/hazards/vocabulary, not from here.
import { getLang } from "../i18n.js";

const STRINGS = {
  "open": ["隐患台账", "Hazard ledger"],
  "token": ["令牌（巡查员 / 监管 / 管理员）", "Token (inspector / supervisor / admin)"],
  "tokenUse": ["使用令牌", "Use token"],
  "tokenSaved": ["令牌已设置", "Token set"],
  "new": ["登记隐患", "Register a hazard"],
  "stats": ["统计图表", "Charts"],
  "exportXlsx": ["导出 Excel", "Export xlsx"],
  "exportHtml": ["打印版", "Printable"],
  "filters": ["筛选", "Filters"],
  "all": ["全部", "All"],
  "openOnly": ["未销号（在办）", "Open"],
  "status": ["状态", "Status"],
  "ruleSource": ["规则 / 来源", "Rule / source"],
  "risk": ["风险等级", "Risk level"],
  "area": ["行政区（县 / 市代码）", "Area (county / city code)"],
  "overdueOnly": ["仅逾期", "Overdue only"],
  "inView": ["仅当前视图", "Current view only"],
  "apply": ["查询", "Search"],
  "count": ["共 {n} 条", "{n} entries"],
  "more": ["更多…", "More…"],
  "none": ["没有符合条件的隐患", "No entries match"],
  "overdue": ["逾期", "Overdue"],
  "cleared": ["条件已消除", "Condition cleared"],
  "back": ["← 返回列表", "← Back to the list"],
  "evidence": ["判定依据", "Evidence"],
  "measured": ["实测值", "Measured"],
  "required": ["要求值", "Required"],
  "clause": ["依据条款", "Clause"],
  "inputs": ["输入参数", "Inputs"],
  "facilities": ["关联设施", "Facilities"],
  "sixFixed": ["六定", "Six fixed items"],
  "timeline": ["流转记录", "Audit trail"],
  "attachments": ["附件", "Attachments"],
  "upload": ["上传附件", "Upload"],
  "uploadKind": ["类型", "Kind"],
  "caption": ["说明", "Caption"],
  "uploaded": ["附件已上传", "Attachment uploaded"],
  "actions": ["可执行操作", "Actions"],
  "noActions": ["当前令牌在此状态下无可执行操作", "No action for this token in this state"],
  "comment": ["意见 / 说明", "Comment"],
  "commentRequired": ["（必填）", "(required)"],
  "submit": ["提交", "Submit"],
  "cancel": ["取消", "Cancel"],
  "done": ["已{action}：{number}", "{action}: {number}"],
  "stale": ["该条目已被他人修改，已刷新为最新状态", "Someone else changed this entry; it has been reloaded"],
  "missing": ["缺少：{fields}", "Missing: {fields}"],
  "number": ["编号", "Number"],
  "title": ["隐患名称", "Title"],
  "source": ["来源", "Source"],
  "rule": ["规则", "Rule"],
  "facilityType": ["设施类型", "Facility type"],
  "hazardClass": ["隐患等级", "Hazard class"],
  "supervision": ["挂牌督办", "Supervision"],
  "location": ["位置", "Location"],
  "county": ["县级代码", "County"],
  "foundAt": ["发现时间", "Found at"],
  "description": ["隐患描述", "Description"],
  "verify": ["验收", "Acceptance"],
  "closedAt": ["销号时间", "Closed at"],
  "previous": ["前次条目（复发）", "Earlier entry (recurrence)"],
  "position": ["位置（经度, 纬度）", "Position (lon, lat)"],
  "pick": ["在地图上点选", "Pick on the map"],
  "pickHint": ["在地图上单击隐患位置", "Click the hazard's position on the map"],
  "registered": ["已登记：{number}", "Registered: {number}"],
  "needPosition": ["请先在地图上点选位置", "Pick a position on the map first"],
  "byStatus": ["按状态", "By status"],
  "byLevel": ["按风险等级", "By risk level"],
  "byType": ["按设施类型", "By facility type"],
  "total": ["合计 {n} 条，逾期 {o} 条", "{n} entries, {o} overdue"],
  // events written by the platform rather than by a workflow action
  "ev.register_manual": ["登记", "Registered"],
  "ev.detect": ["自动规则发现", "Found by a rule"],
  "ev.rescan": ["复查扫描更新", "Updated by a rescan"],
  "ev.condition_cleared": ["条件已消除", "Condition cleared"],
  "ev.refs": ["设施重新交付，引用更新", "Facility references follow a re-delivery"],
  "ev.attach": ["上传附件", "Attachment added"],
  "f.status": ["状态", "Status"],
  "f.closed_by": ["销号人", "Closed by"],
  "f.verified_by": ["验收人", "Accepted by"],
  "f.condition_cleared": ["条件已消除", "Condition cleared"],
  "f.measured": ["实测值", "Measured"],
  "f.required": ["要求值", "Required"],
  "f.inputs": ["输入参数", "Inputs"],
};

/** Panel text for a key, with {name} placeholders filled. */
export function tx(key, vars = {}) {
  const pair = STRINGS[key];
  let s = pair ? pair[getLang() === "en" ? 1 : 0] : key;
  for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}

/** The label of a vocabulary entry ({zh, en}) in the current language. */
export function label(entry, fallback = "") {
  if (!entry) return fallback;
  return (getLang() === "en" ? entry.en : entry.zh) || entry.zh || entry.en || fallback;
}

// Styles of the 隐患台账 panel, added to the page once when the panel first opens (the panel's
// look stays with its module; the shared stylesheet is untouched).
const CSS = `
#panel-body .hz-token { display: flex; gap: 6px; align-items: flex-end; flex-wrap: wrap; margin-bottom: 6px; }
#panel-body .hz-tools { display: flex; gap: 6px; flex-wrap: wrap; align-items: center; margin: 6px 0; }
#panel-body .hz-tools a { font-size: 13px; }
#panel-body .hz-filters { display: grid; grid-template-columns: 1fr 1fr; gap: 4px 8px; border: 1px solid #ddd; padding: 6px; }
#panel-body .hz-filters label { display: flex; flex-direction: column; font-size: 12px; }
#panel-body .hz-filters label.hz-check { flex-direction: row; align-items: center; }
#panel-body .hz-items { list-style: none; margin: 0; padding: 0; }
#panel-body .hz-item { padding: 6px 4px; border-bottom: 1px solid #eee; cursor: pointer; }
#panel-body .hz-item:hover { background: #f3f7fb; }
#panel-body .hz-title { font-size: 13px; margin-top: 2px; }
#panel-body .hz-item small { color: #666; }
#panel-body .hz-dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 4px; border: 1px solid #fff; box-shadow: 0 0 0 1px #999; }
#panel-body .hz-num { font-family: monospace; margin-right: 4px; }
#panel-body .hz-badge { display: inline-block; font-size: 11px; padding: 0 5px; border-radius: 8px; margin-left: 3px; background: #e8eef5; color: #234; }
#panel-body .hz-badge.hz-overdue { background: #b00020; color: #fff; }
#panel-body .hz-badge.hz-cleared { background: #e6f4ea; color: #14532d; }
#panel-body .hz-badge[data-status="closed"] { background: #d9f2dd; }
#panel-body .hz-badge[data-status="dismissed"] { background: #eee; color: #666; }
#panel-body .hz-badge[data-status="awaiting_acceptance"] { background: #fff4ce; }
#panel-body .hz-chart { width: 100%; height: 180px; }
#panel-body .hz-events { padding-left: 18px; font-size: 12px; }
#panel-body .hz-events li { margin-bottom: 6px; }
#panel-body .hz-events .hz-changes, #panel-body .hz-events .hz-move { color: #555; }
#panel-body .hz-actions { display: flex; flex-wrap: wrap; gap: 4px; }
#panel-body .hz-form { display: flex; flex-direction: column; gap: 4px; border: 1px solid #ddd; padding: 6px; margin-top: 6px; }
#panel-body .hz-form label { display: flex; flex-direction: column; font-size: 12px; }
#panel-body .hz-files { list-style: none; padding: 0; }
#panel-body .hz-files img { max-width: 120px; max-height: 90px; display: block; }
#panel-body .hz-upload { display: flex; flex-wrap: wrap; gap: 4px; align-items: flex-end; font-size: 12px; }
#panel-body .hz-empty { color: #777; }
`;

/** Add the panel's style sheet to the page (once). */
export function injectStyle() {
  if (document.getElementById("hz-style")) return;
  const style = document.createElement("style");
  style.id = "hz-style";
  style.textContent = CSS;
  document.head.append(style);
}

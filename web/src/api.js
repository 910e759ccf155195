// The only module that speaks HTTP to the API (docs/api-contract.md). Every call returns parsed
// JSON or throws an ApiError carrying the server's bilingual message. An endpoint the server
// does not have (the route itself is missing: code http_404 / http_405, or a non-JSON 404)
// is flagged `unavailable`, so the interface can say so instead of breaking.
const TOKEN_KEY = "cim.token";

/** Error of an API call, with the server's bilingual message when it sent one. */
export class ApiError extends Error {
  constructor(status, body, what) {
    super(body?.message_en || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code || `http_${status}`;
    this.message_zh = body?.message_zh;
    this.message_en = body?.message_en;
    this.detail = body?.detail;
    this.what = what;
    // A missing route (not a missing record): the generic HTTP 404/405 of the router/static mount.
    this.unavailable = status === 501 || ((status === 404 || status === 405)
      && (!body || body.code === "http_404" || body.code === "http_405"));
    if (this.unavailable) {
      this.message_zh = `服务端尚未提供此功能：${what}`;
      this.message_en = `The server does not provide this yet: ${what}`;
    } else if (status === 401 || status === 403) {
      this.message_zh = this.message_zh || "需要登录或令牌无权限";
      this.message_en = this.message_en || "A token with the right permission is needed";
    }
  }
}

/** The uploader / viewer token of this browser session (sessionStorage), or null. */
export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Keep a token for this browser session (empty clears it). */
export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token.trim());
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  const token = getToken();
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

async function parse(res, what) {
  const type = res.headers.get("content-type") || "";
  const body = type.includes("json") ? await res.json().catch(() => null) : null;
  if (!res.ok) throw new ApiError(res.status, body, what);
  if (res.status === 204) return null;
  return body ?? res.text();
}

async function send(method, path, body, { what = path, signal, form } = {}) {
  let res;
  try {
    res = await fetch(path, {
      method,
      signal,
      headers: form ? headers() : headers(body === undefined ? {} : { "Content-Type": "application/json" }),
      body: form ?? (body === undefined ? undefined : JSON.stringify(body)),
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    const e = new ApiError(0, { code: "network", message_zh: "无法连接服务器", message_en: "Cannot reach the server" }, what);
    e.unavailable = false;
    throw e;
  }
  return parse(res, what);
}

/** GET binary (terrain heights) as an ArrayBuffer; errors as for JSON calls. */
export async function getBuffer(path, { what = path } = {}) {
  let res;
  try {
    res = await fetch(path, { headers: headers({ Accept: "application/octet-stream" }) });
  } catch {
    throw new ApiError(0, { code: "network", message_zh: "无法连接服务器", message_en: "Cannot reach the server" }, what);
  }
  if (!res.ok) await parse(res, what);
  return res.arrayBuffer();
}

/** GET JSON. `what` names the endpoint in messages. */
export const getJSON = (path, opts) => send("GET", path, undefined, opts);
/** POST a JSON body, JSON back. */
export const postJSON = (path, body, opts) => send("POST", path, body, opts);
/** POST multipart form data (uploads). */
export const postForm = (path, form, opts) => send("POST", path, undefined, { ...opts, form });

const cache = new Map();
const dictionaries = new Map();

/** GET once per page life (catalogue, dictionaries): concurrent callers share one request. */
export function getCached(path) {
  if (!cache.has(path)) {
    const p = getJSON(path).catch((err) => {
      cache.delete(path);
      throw err;
    });
    cache.set(path, p);
  }
  return cache.get(path);
}

/** The layer catalogue (/api/layers) as a Map id → spec. */
export async function layerCatalog() {
  const list = await getCached("/api/layers");
  return new Map(list.map((spec) => [spec.id, spec]));
}

/**
 * Code → name lookup for one dictionary table (/api/dictionaries/{table}). Resolves to an empty
 * Map when the dictionary endpoint is missing, so codes are shown as they are.
 */
export function dictionary(table) {
  if (!dictionaries.has(table)) {
    dictionaries.set(table, getJSON(`/api/dictionaries/${encodeURIComponent(table)}`, { what: "GET /api/dictionaries/{table}" })
      .then((rows) => new Map((rows || []).map((r) => [String(r.code), r])))
      .catch((err) => {
        if (!(err instanceof ApiError)) dictionaries.delete(table);
        console.warn(`dictionary ${table}: ${err.message_en || err}`);
        return new Map();
      }));
  }
  return dictionaries.get(table);
}

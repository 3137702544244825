// Shared by the three pages: strings, the HTTP API, storage, formatting, the clock.

const table = JSON.parse(document.getElementById("strings").textContent);
export const lang = document.documentElement.lang || "en";

/** The string `key` of this page's language, with {name} filled from `vars`. */
export function t(key, vars = {}) {
  const text = table[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

/** An API error code in words; never the raw code. */
export function errorText(code) {
  const key = `err_${code}`;
  return key in table ? table[key] : table.err_unknown;
}

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || code);
    this.status = status;
    this.code = code;
  }
  get words() { return errorText(this.code); }
}

/** JSON request to the service; throws ApiError (code "network" when it never answered). */
export async function api(method, path, { body, token, retries = 0 } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  for (let attempt = 0; ; attempt++) {
    let res;
    try {
      res = await fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store", credentials: "omit",
      });
    } catch {
      if (attempt < retries) { await sleep(300 * 2 ** attempt); continue; }
      throw new ApiError(0, "network", "");
    }
    let data = null;
    try { data = await res.json(); } catch { data = null; }
    if (res.ok) return data;
    const code = data && typeof data.error === "string" ? data.error : "unknown";
    if ((res.status === 503 || res.status === 429) && attempt < retries) {
      await sleep(500 * 2 ** attempt);
      continue;
    }
    throw new ApiError(res.status, code, data && data.detail);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- browser storage (a private window may refuse it: then nothing is kept) ----------

export function load(key, fallback) {
  try {
    const raw = localStorage.getItem(key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch { return fallback; }
}

export function save(key, value) {
  try { localStorage.setItem(key, JSON.stringify(value)); } catch { /* not kept */ }
}

const HOSTED = "livecart.hosted";

/** Streams this browser started: {id, title, token, created_at}, newest first. */
export function hostedStreams() {
  const list = load(HOSTED, []);
  return Array.isArray(list) ? list.filter((s) => s && s.id && s.token) : [];
}

export function rememberHosted(stream) {
  const rest = hostedStreams().filter((s) => s.id !== stream.id);
  save(HOSTED, [stream, ...rest].slice(0, 50));
}

// --- formatting --------------------------------------------------------------------

const money = new Intl.NumberFormat(lang === "zh" ? "zh-CN" : "en-US", {
  minimumFractionDigits: 2, maximumFractionDigits: 2,
});
export const formatMoney = (cents) => money.format(cents / 100);

/** "12.50" (what a person types) -> 1250 cents, or null. */
export function parseMoney(text) {
  const m = /^\s*(\d{1,9})(?:[.,](\d{1,2}))?\s*$/.exec(text);
  if (!m) return null;
  return Number(m[1]) * 100 + Number((m[2] || "0").padEnd(2, "0"));
}

export function formatDuration(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(h ? 2 : 1, "0");
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

const timeFmt = new Intl.DateTimeFormat(lang === "zh" ? "zh-CN" : "en-GB", {
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});
export const formatTime = (ms) => timeFmt.format(new Date(ms));

// --- the server's clock ------------------------------------------------------------
// Countdowns use the server's times (ends_at, expires_at): every message carries the
// server's `ts`, which gives this browser's offset (the smallest seen: least delayed).
let offset = null;
export function sawServerTime(ts) {
  if (typeof ts !== "number") return;
  const o = ts - Date.now();
  if (offset === null || o < offset || Math.abs(o - offset) > 60_000) offset = o;
}
export const serverNow = () => Date.now() + (offset ?? 0);

// --- small DOM helpers ---------------------------------------------------------------

export const $ = (sel, root = document) => root.querySelector(sel);
export const byTestId = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);

/** An element with attributes and children (strings become text: never parsed as HTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "testid") node.dataset.testid = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

/** Show `text` in a status line (role=status/alert), cleared after a while. */
export function flash(node, text, { error = false, ms = 6000 } = {}) {
  node.textContent = text;
  node.classList.toggle("error", error);
  node.hidden = !text;
  clearTimeout(node._timer);
  if (text && ms) node._timer = setTimeout(() => { node.hidden = true; node.textContent = ""; }, ms);
}

/** The current ?lang= carried to the next page, if the person chose one. */
export function withLang(path) {
  const chosen = new URLSearchParams(location.search).get("lang");
  if (!chosen) return path;
  const sep = path.includes("?") ? "&" : "?";
  const hashAt = path.indexOf("#");
  if (hashAt < 0) return `${path}${sep}lang=${chosen}`;
  return `${path.slice(0, hashAt)}${sep}lang=${chosen}${path.slice(hashAt)}`;
}

export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

// Language links keep the page (and the host console's fragment) as they are.
for (const a of document.querySelectorAll("a.lang-switch")) {
  if (a.hreflang === lang) a.setAttribute("aria-current", "true");
  a.addEventListener("click", () => {
    const q = new URLSearchParams(location.search);
    q.set("lang", a.hreflang);
    a.href = `${location.pathname}?${q}${location.hash}`;
  });
}

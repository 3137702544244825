// The host console: products, pin, flash sales, host messages, moderation, live figures
// with a chart, orders. The host token lives in the URL fragment and this browser's
// storage only: it goes to the service in Authorization headers, never in a URL.
import {
  $, api, byTestId, el, errorText, flash, formatDuration, formatMoney, formatTime,
  hostedStreams, parseMoney, rememberHosted, serverNow, t, withLang,
} from "./common.js";
import { drawChart } from "./chart.js";
import { hostChat } from "./host-chat.js";
import { hostSocial } from "./host-social.js";
import { LiveSocket } from "./socket.js";

const sid = decodeURIComponent(location.pathname.split("/").pop());
const POLL_MS = 2000;
const SAMPLE_MS = 5000;
const SPAN_MS = 10 * 60 * 1000;
const END_DELAY_S = 3;
const samplesKey = `livecart.samples.${sid}`;

const ui = {
  title: $("#stream-title"),
  conn: byTestId("connection-state"),
  link: byTestId("viewer-link"),
  copy: $("#copy-link"),
  end: byTestId("end-stream"),
  topMsg: $("#top-msg"),
  ended: byTestId("stream-ended"),
  noToken: $("#no-token"),
  main: $("#main"),
  stat: Object.fromEntries(["viewers", "peak", "likes", "reserved", "paid", "revenue"]
    .map((k) => [k, byTestId(`stat-${k}`)])),
  chart: $("#chart"),
  productForm: $("#product-form"),
  productMsg: $("#product-msg"),
  products: $("#products"),
  noProducts: $("#no-products"),
  skus: $("#skus"),
  saleForm: $("#sale-form"),
  saleMsg: $("#sale-msg"),
  sales: $("#sales"),
  comments: $("#comments"),
  noComments: $("#no-comments"),
  messageForm: $("#message-form"),
  messageMsg: $("#message-msg"),
  bannedForm: $("#banned-form"),
  banned: $("#banned-words"),
  bannedMsg: $("#banned-msg"),
  orders: $("#orders"),
  noOrders: $("#no-orders"),
  mine: $("#mine"),
};

const state = {
  token: null,
  stream: null,
  products: new Map(),
  sales: new Map(),
  muted: new Set(),
  names: new Map(), // viewer id -> name, learnt from comments
  ended: false,
  stats: null,
  liveViewers: null,
  liveLikes: null,
  samples: [],
  socket: null,
  ending: null,
};

// --- the token -----------------------------------------------------------------------

function findToken() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) return fromHash;
  const known = hostedStreams().find((s) => s.id === sid);
  if (known) {
    // Put it back in the fragment so the address bar can be bookmarked as is.
    history.replaceState(null, "", `${location.pathname}${location.search}#token=${known.token}`);
    return known.token;
  }
  return null;
}

$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const raw = $("#host-link").value.trim();
  const m = /#token=([^&\s]+)/.exec(raw);
  const token = m ? decodeURIComponent(m[1]) : raw;
  if (!token) return;
  location.hash = `token=${token}`;
  location.reload();
});

const host = (method, path, body) => api(method, path, { body, token: state.token, retries: 1 });

// --- figures -------------------------------------------------------------------------

function setNum(node, n, shown = String(n)) {
  if (node.dataset.value === String(n) && node.textContent === shown) return;
  node.dataset.value = String(n);
  node.textContent = shown;
  node.classList.remove("bump");
  void node.offsetWidth;
  node.classList.add("bump");
}

function renderFigures() {
  const s = state.stats || {};
  setNum(ui.stat.viewers, state.liveViewers ?? s.viewers ?? 0);
  setNum(ui.stat.peak, Math.max(s.peak_viewers ?? 0, state.liveViewers ?? 0));
  setNum(ui.stat.likes, Math.max(s.likes ?? 0, state.liveLikes ?? 0));
  setNum(ui.stat.reserved, s.reserved ?? 0);
  setNum(ui.stat.paid, s.paid ?? 0);
  setNum(ui.stat.revenue, s.revenue_cents ?? 0, formatMoney(s.revenue_cents ?? 0));
}

async function pollStats() {
  try {
    state.stats = await host("GET", `/api/streams/${sid}/stats`);
    if (typeof state.stats.viewers === "number") state.liveViewers = state.stats.viewers;
    renderFigures();
  } catch (err) {
    if (err.code === "unauthorized" || err.code === "forbidden") showNoToken();
  }
}

function sample() {
  const s = state.stats || {};
  const now = serverNow();
  state.samples.push({ t: now, viewers: state.liveViewers ?? s.viewers ?? 0, paid: s.paid ?? 0 });
  state.samples = state.samples.filter((x) => x.t > now - SPAN_MS);
  try { sessionStorage.setItem(samplesKey, JSON.stringify(state.samples)); } catch { /* not kept */ }
  // The window grows with the stream up to SPAN_MS, so a young stream fills the chart.
  const span = Math.min(SPAN_MS, Math.max(60_000, now - (state.samples[0]?.t ?? now)));
  drawChart(ui.chart, state.samples, span, now, t("chart_empty"));
}

function redrawChart() {
  // The newest figures as a point at "now", between two samples.
  const s = state.stats || {};
  const now = serverNow();
  const live = { t: now, viewers: state.liveViewers ?? s.viewers ?? 0, paid: s.paid ?? 0 };
  const points = [...state.samples, live];
  const span = Math.min(SPAN_MS, Math.max(60_000, now - points[0].t));
  drawChart(ui.chart, points, span, now, t("chart_empty"));
}

// --- products and sales ----------------------------------------------------------------

function applyState(s) {
  state.stream = s;
  ui.title.textContent = s.title;
  document.title = `${s.title} — ${t("host_console")}`;
  state.products = new Map((s.products || []).map((p) => [p.sku, p]));
  state.sales = new Map((s.sales || []).map((x) => [x.sku, x]));
  if (typeof s.viewers === "number") state.liveViewers = s.viewers;
  if (typeof s.likes === "number") state.liveLikes = s.likes;
  rememberHosted({ id: sid, title: s.title, token: state.token, created_at: s.created_at });
  if (s.status === "ended") endedView();
  renderProducts();
  renderSales();
  renderFigures();
  renderMine();
}

async function refreshState() {
  try { applyState(await api("GET", `/api/streams/${sid}`, { retries: 2 })); } catch { /* later */ }
}

function renderProducts() {
  const pinned = state.stream?.pinned_sku;
  const rows = [...state.products.values()].map((p) => {
    const isPinned = p.sku === pinned;
    const pin = el("button", {
      type: "button", class: isPinned ? "pin on" : "pin", testid: "pin",
      "aria-pressed": isPinned ? "true" : "false", disabled: state.ended,
      onclick: () => pinProduct(p.sku),
    }, isPinned ? t("pinned") : t("pin"));
    return el("tr", { testid: "product-row", "data-sku": p.sku, class: isPinned ? "pinned" : null },
      el("td", { class: "mono", text: p.sku }), el("td", { text: p.title }),
      el("td", { class: "num", text: formatMoney(p.price_cents) }),
      el("td", { class: "num", testid: "product-left", text: String(p.stock_left ?? p.stock) }),
      el("td", {}, pin));
  });
  ui.products.replaceChildren(...rows);
  ui.noProducts.hidden = rows.length > 0;
  ui.skus.replaceChildren(...[...state.products.values()].map((p) => el("option", { value: p.sku, text: p.title })));
}

async function pinProduct(sku) {
  try {
    await host("POST", `/api/streams/${sid}/pin`, { sku });
    if (state.stream) state.stream.pinned_sku = sku;
    renderProducts();
  } catch (err) { flash(ui.productMsg, err.words, { error: true }); }
}

function renderSales() {
  const now = serverNow();
  const items = [...state.sales.values()].filter((s) => s.ends_at > now - 1000).map((s) => {
    const p = state.products.get(s.sku);
    return el("li", { testid: "sale-row", "data-sku": s.sku }, t("sale_line", {
      title: p ? p.title : s.sku, price: formatMoney(s.price_cents),
      left: s.stock_left ?? s.stock, total: s.stock, time: formatDuration(s.ends_at - now),
    }));
  });
  ui.sales.replaceChildren(...items);
}

ui.productForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ui.productForm);
  const price = parseMoney(String(f.get("price")));
  const body = {
    sku: String(f.get("sku")).trim(), title: String(f.get("title")).trim(),
    price_cents: price, stock: Number(f.get("stock")),
  };
  if (f.get("limit")) body.per_user_limit = Number(f.get("limit"));
  if (!body.sku || !body.title || price === null || !Number.isInteger(body.stock)) {
    flash(ui.productMsg, errorText("invalid_body"), { error: true });
    return;
  }
  try {
    const p = await host("POST", `/api/streams/${sid}/products`, body);
    state.products.set(p.sku, p);
    renderProducts();
    ui.productForm.reset();
    flash(ui.productMsg, t("product_added"));
    const saleSku = ui.saleForm.elements.sku;
    if (!saleSku.value) saleSku.value = p.sku;
  } catch (err) { flash(ui.productMsg, err.words, { error: true }); }
});

ui.saleForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ui.saleForm);
  const price = parseMoney(String(f.get("price")));
  const body = {
    sku: String(f.get("sku")).trim(), price_cents: price,
    stock: Number(f.get("stock")), duration_s: Number(f.get("duration")),
  };
  if (!body.sku || price === null || !Number.isInteger(body.stock) || !Number.isInteger(body.duration_s)) {
    flash(ui.saleMsg, errorText("invalid_body"), { error: true });
    return;
  }
  try {
    const sale = await host("POST", `/api/streams/${sid}/sales`, body);
    state.sales.set(sale.sku, sale);
    renderSales();
    flash(ui.saleMsg, t("sale_started"));
  } catch (err) { flash(ui.saleMsg, err.words, { error: true }); }
});

// --- chat and moderation (host-chat.js) -----------------------------------------------

const chat = hostChat({ sid, host, ui, state });
const { addComment, removeComment, loadModeration } = chat;

const social = hostSocial({ sid, host, state });

// --- orders --------------------------------------------------------------------------

async function pollOrders() {
  let page;
  try { page = await host("GET", `/api/streams/${sid}/orders?limit=50`); } catch { return; }
  const seen = new Set([...ui.orders.children].map((r) => r.dataset.id));
  const rows = page.orders.map((o) => {
    const p = state.products.get(o.sku);
    const who = state.names.get(o.viewer_id) || t("viewer_short", { id: o.viewer_id.slice(-6) });
    return el("tr", { testid: "order-row", "data-id": o.id, "data-status": o.status, class: seen.size && !seen.has(o.id) ? "new" : null },
      el("td", { text: formatTime(o.paid_at || o.created_at) }), el("td", { text: who }),
      el("td", { text: p ? p.title : o.sku }), el("td", { class: "num", text: String(o.qty) }),
      el("td", { class: "num", "data-value": o.total_cents, text: formatMoney(o.total_cents) }),
      el("td", {}, el("span", { class: `badge ${o.status}`, text: t(`status_${o.status}`) })));
  });
  ui.orders.replaceChildren(...rows);
  ui.noOrders.hidden = rows.length > 0;
}

// --- live messages ---------------------------------------------------------------------

function onMessage(msg) {
  const d = msg.data || {};
  switch (msg.type) {
    case "comment": addComment(msg, false); break;
    case "comment.deleted": removeComment(d.id); break;
    case "viewers": state.liveViewers = d.count; renderFigures(); break;
    case "likes": state.liveLikes = d.total; renderFigures(); break;
    case "product.pinned": if (state.stream) state.stream.pinned_sku = d.sku; renderProducts(); break;
    case "sale.started": state.sales.set(d.sku, d); renderSales(); break;
    case "sale.ended": state.sales.delete(d.sku); renderSales(); break;
    case "stock": {
      const p = state.products.get(d.sku);
      if (p) p.stock_left = d.left; else refreshState();
      const s = state.sales.get(d.sku);
      if (s) s.stock_left = d.left;
      renderProducts();
      renderSales();
      pollOrders();
      break;
    }
    case "stream.ended": endedView(); break;
    default: break;
  }
  social.onMessage(msg);
}

function onBackfill(msg) {
  if (msg.type === "comment") addComment(msg, true);
  else if (msg.type === "comment.deleted") removeComment(msg.data?.id);
}

function setConn(name) {
  if (state.ended) return;
  ui.conn.dataset.state = name;
  ui.conn.textContent = t(`conn_${name}`);
}

// --- ending ----------------------------------------------------------------------------

// One click ends the stream after a short countdown that a second click cancels: no
// modal confirm, and no stream ended by a slip of the finger.
ui.end.addEventListener("click", () => {
  if (state.ended) return;
  if (state.ending) {
    clearInterval(state.ending.timer);
    state.ending = null;
    ui.end.textContent = t("end_stream");
    ui.end.classList.remove("armed");
    return;
  }
  let n = END_DELAY_S;
  ui.end.classList.add("armed");
  ui.end.textContent = t("ending_in", { n });
  const timer = setInterval(async () => {
    n -= 1;
    if (n > 0) { ui.end.textContent = t("ending_in", { n }); return; }
    clearInterval(timer);
    state.ending = null;
    try {
      await host("POST", `/api/streams/${sid}/end`);
      endedView();
    } catch (err) {
      flash(ui.topMsg, err.words, { error: true });
      ui.end.textContent = t("end_stream");
      ui.end.classList.remove("armed");
    }
  }, 1000);
  state.ending = { timer };
});

function endedView() {
  if (state.ended) return;
  state.ended = true;
  ui.ended.hidden = false;
  ui.end.disabled = true;
  ui.end.classList.remove("armed");
  ui.end.textContent = t("status_ended");
  ui.conn.dataset.state = "ended";
  ui.conn.textContent = t("conn_ended");
  state.sales.clear();
  state.socket?.stop();
  for (const form of [ui.productForm, ui.saleForm, ui.messageForm, ...social.forms]) {
    for (const c of form.elements) c.disabled = true;
  }
  renderProducts();
  renderSales();
  pollStats();
  pollOrders();
}

// --- the host's other streams ----------------------------------------------------------

function renderMine() {
  const items = hostedStreams().map((s) => el("li", {},
    s.id === sid
      ? el("span", { text: `${s.title} (${t("this_stream")})` })
      : el("a", { href: withLang(`/host/${s.id}#token=${s.token}`), text: s.title || s.id })));
  ui.mine.replaceChildren(...items);
}

// --- copy the viewers' link --------------------------------------------------------------

ui.copy.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(ui.link.value);
  } catch {
    ui.link.select();
    document.execCommand?.("copy");
  }
  ui.copy.textContent = t("copied");
  setTimeout(() => { ui.copy.textContent = t("copy"); }, 1500);
});

// --- start -----------------------------------------------------------------------------

function showNoToken() {
  ui.main.hidden = true;
  ui.noToken.hidden = false;
  state.socket?.stop();
}

async function main() {
  ui.link.value = `${location.origin}${withLang(`/s/${sid}`)}`;
  state.token = findToken();
  if (!state.token) { showNoToken(); return; }
  try {
    state.samples = JSON.parse(sessionStorage.getItem(samplesKey) || "[]");
  } catch { state.samples = []; }
  let s;
  try {
    s = await api("GET", `/api/streams/${sid}`, { retries: 3 });
  } catch (err) {
    ui.title.textContent = err.code === "unknown_stream" ? t("unknown_stream_page") : err.words;
    return;
  }
  ui.main.hidden = false;
  applyState(s);
  await pollStats();
  if (ui.noToken.hidden === false) return;
  loadModeration();
  pollOrders();
  sample();
  social.loadBuys();
  social.pollReferrals();
  setInterval(() => { if (!state.ended) { pollStats(); pollOrders(); social.pollReferrals(); } }, POLL_MS);
  setInterval(() => { sample(); renderSales(); }, SAMPLE_MS);
  setInterval(() => { renderSales(); redrawChart(); }, 1000);
  state.socket = new LiveSocket(sid, {
    backfillCount: 100,
    hello: (st) => applyState(st),
    message: onMessage,
    backfill: onBackfill,
    state: setConn,
    missed: () => flash(ui.topMsg, t("missed_messages")),
  });
  if (!state.ended) state.socket.start();
}

main();

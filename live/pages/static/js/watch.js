// The watch page: chat, likes, the pinned product or running flash sale, buy → hold →
// pay or cancel, my orders, and a connection that resumes by itself.
import {
  $, api, byTestId, el, errorText, flash, formatDuration, formatMoney, load, save, serverNow, t,
} from "./common.js";
import { LiveSocket } from "./socket.js";
import { watchBuying } from "./watch-buying.js";
import { watchSocial } from "./watch-social.js";

const sid = decodeURIComponent(location.pathname.split("/").pop());
const VIEWER = "livecart.viewer";
const ordersKey = `livecart.orders.${sid}`;
const MAX_COMMENTS = 200;

const ui = {
  title: $("#stream-title"),
  hostName: $("#host-name"),
  viewers: byTestId("viewer-count"),
  conn: byTestId("connection-state"),
  missed: $("#missed"),
  ended: byTestId("stream-ended"),
  hostMessage: byTestId("host-message"),
  comments: $("#comments"),
  hearts: $("#hearts"),
  noOffer: $("#no-offer"),
  offer: $("#offer"),
  offerTitle: $("#offer-title"),
  offerPrice: $("#offer-price"),
  offerWas: $("#offer-was"),
  sale: $("#sale"),
  countdown: byTestId("sale-countdown"),
  stockbar: $("#stockbar"),
  stockfill: $("#stockfill"),
  stockLeft: byTestId("stock-left"),
  qty: $("#qty"),
  buy: byTestId("buy"),
  offerMsg: $("#offer-msg"),
  reservation: $("#reservation"),
  resStatus: byTestId("reservation-status"),
  pay: byTestId("pay"),
  cancel: byTestId("cancel"),
  myOrders: $("#my-orders-list"),
  myOrdersCount: $("#my-orders-count"),
  myOrdersEmpty: $("#my-orders-empty"),
  myOrdersBox: $("#my-orders"),
  shownOrders: 0,
  commentForm: $("#comment-form"),
  commentText: byTestId("comment-text"),
  like: byTestId("like"),
  likeCount: byTestId("like-count"),
  composerMsg: $("#composer-msg"),
  join: $("#join"),
  joinForm: $("#join-form"),
  joinName: byTestId("viewer-name"),
  joinMsg: $("#join-msg"),
};

const state = {
  stream: null,
  products: new Map(),
  sales: new Map(), // sku -> running sale
  ended: false,
  viewer: load(VIEWER, null),
  mine: load(ordersKey, []), // this viewer's reservations in this stream, newest first
  current: null, // id of the reservation shown in the panel
  socket: null,
};

// --- the stream's state ----------------------------------------------------------------

function applyState(s) {
  state.stream = s;
  ui.title.textContent = s.title;
  document.title = `${s.title} — ${t("app_name")}`;
  ui.hostName.textContent = s.host_name;
  $("#poster-title").textContent = s.title;
  $("#poster-host").textContent = s.host_name;
  state.products = new Map((s.products || []).map((p) => [p.sku, p]));
  state.sales = new Map((s.sales || []).map((x) => [x.sku, x]));
  setNumber(ui.viewers, s.viewers ?? 0);
  if (typeof s.likes === "number") setNumber(ui.likeCount, s.likes);
  if (s.status === "ended") endStream();
  renderOffer();
  social.render();
}

async function refreshState() {
  try { applyState(await api("GET", `/api/streams/${sid}`, { retries: 2 })); } catch { /* next message */ }
}

function featuredSku() {
  let best = null;
  for (const sale of state.sales.values()) {
    if (sale.ends_at > serverNow() - 2000 && (!best || sale.starts_at > best.starts_at)) best = sale;
  }
  return best ? best.sku : state.stream?.pinned_sku || null;
}

function renderOffer() {
  const sku = featuredSku();
  const product = sku && state.products.get(sku);
  ui.noOffer.hidden = Boolean(product);
  ui.offer.hidden = !product;
  if (!product) return;
  const sale = state.sales.get(sku);
  ui.offerTitle.textContent = product.title;
  ui.offerPrice.textContent = formatMoney(sale ? sale.price_cents : product.price_cents);
  ui.offerWas.hidden = !sale || sale.price_cents >= product.price_cents;
  ui.offerWas.textContent = t("price_was", { price: formatMoney(product.price_cents) });
  ui.sale.hidden = !sale;
  const left = sale ? sale.stock_left ?? product.stock_left : product.stock_left;
  const total = sale ? sale.stock : product.stock;
  setNumber(ui.stockLeft, left);
  const pct = total > 0 ? Math.max(0, Math.min(100, (100 * left) / total)) : 0;
  ui.stockfill.style.width = `${pct}%`;
  ui.stockbar.setAttribute("aria-valuenow", String(Math.round(pct)));
  ui.stockbar.setAttribute("aria-valuetext", t("stock_of", { left, total }));
  ui.stockbar.classList.toggle("low", pct <= 20);
  ui.buy.disabled = state.ended || left <= 0;
  ui.buy.textContent = left <= 0 ? t("sold_out") : t("buy");
  tick();
}

function setNumber(node, n) {
  const text = String(n);
  if (node.textContent === text) return;
  node.textContent = text;
  node.classList.remove("bump");
  void node.offsetWidth; // restart the animation
  node.classList.add("bump");
}

// --- messages ------------------------------------------------------------------------

function onMessage(msg) {
  const d = msg.data || {};
  switch (msg.type) {
    case "comment": addComment(msg, false); break;
    case "comment.deleted": removeComment(d.id); break;
    case "likes": setNumber(ui.likeCount, d.total ?? 0); if (d.count) hearts(Math.min(d.count, 6)); break;
    case "viewers": setNumber(ui.viewers, d.count ?? 0); break;
    case "host.message": showHostMessage(d.text); break;
    case "product.pinned":
      if (state.stream) state.stream.pinned_sku = d.sku;
      if (!state.products.has(d.sku)) refreshState();
      renderOffer();
      break;
    case "sale.started":
      state.sales.set(d.sku, d);
      if (!state.products.has(d.sku)) refreshState();
      renderOffer();
      break;
    case "sale.ended": {
      const running = state.sales.get(d.sku);
      if (running && (!d.id || running.id === d.id)) state.sales.delete(d.sku);
      renderOffer();
      break;
    }
    case "stock": {
      const p = state.products.get(d.sku);
      if (p) p.stock_left = d.left;
      const sale = state.sales.get(d.sku);
      if (sale) sale.stock_left = d.left;
      if (!p) refreshState();
      renderOffer();
      break;
    }
    case "stream.ended": endStream(); break;
    default: break;
  }
  social.onMessage(msg);
}

function onBackfill(msg) {
  if (msg.type === "comment") addComment(msg, true);
  else if (msg.type === "comment.deleted") removeComment(msg.data?.id);
  else if (msg.type === "host.message" && ui.hostMessage.hidden) showHostMessage(msg.data?.text);
}

function onPersonal(msg) {
  if (msg.type === "reservation") upsertReservation(msg.data);
  else if (msg.type === "error") {
    const code = msg.data?.code;
    if (code === "unauthorized") { forgetViewer(); return; }
    flash(ui.composerMsg, errorText(code), { error: true });
  }
}

function addComment(msg, older) {
  const d = msg.data;
  if (!d || !d.id || ui.comments.querySelector(`[data-id="${CSS.escape(d.id)}"]`)) return;
  const mine = state.viewer && d.user?.id === state.viewer.viewer_id;
  const row = el("li", { testid: "comment-row", "data-id": d.id, "data-seq": msg.seq, class: mine ? "mine" : null },
    el("span", { class: "who", text: d.user?.name || "?" }), " ", el("span", { class: "what", text: d.text }));
  const nearBottom = ui.comments.scrollHeight - ui.comments.scrollTop - ui.comments.clientHeight < 80;
  // In seq order, whenever it arrives (older comments come after the first hello).
  let before = null;
  if (older) {
    for (const other of ui.comments.children) {
      if (Number(other.dataset.seq) > msg.seq) { before = other; break; }
    }
  }
  ui.comments.insertBefore(row, before);
  while (ui.comments.children.length > MAX_COMMENTS) ui.comments.firstElementChild.remove();
  if (nearBottom || older) ui.comments.scrollTop = ui.comments.scrollHeight;
}

function removeComment(id) {
  if (!id) return;
  ui.comments.querySelector(`[data-id="${CSS.escape(id)}"]`)?.remove();
}

function showHostMessage(text) {
  if (!text) return;
  ui.hostMessage.hidden = false;
  ui.hostMessage.replaceChildren(el("strong", { text: `${t("host")}: ` }), text);
}

function hearts(n) {
  for (let i = 0; i < n; i++) {
    const h = el("span", { class: "heart", text: "♥" });
    h.style.left = `${10 + Math.random() * 70}%`;
    h.style.animationDelay = `${i * 90}ms`;
    ui.hearts.append(h);
    h.addEventListener("animationend", () => h.remove());
  }
}

function endStream() {
  if (state.ended) return;
  state.ended = true;
  ui.ended.hidden = false;
  ui.conn.dataset.state = "ended";
  ui.conn.textContent = t("conn_ended");
  for (const c of [ui.buy, ui.like, ui.commentText, ...ui.commentForm.querySelectorAll("button")]) c.disabled = true;
  state.sales.clear();
  state.socket?.stop();
  renderOffer();
}

function setConn(name) {
  if (state.ended) return;
  ui.conn.dataset.state = name;
  ui.conn.textContent = t(`conn_${name}`);
}

// --- the viewer ----------------------------------------------------------------------

function askName() {
  if (!ui.join.open) ui.join.showModal();
  ui.joinName.focus();
}

function forgetViewer() {
  state.viewer = null;
  save(VIEWER, null);
  connect();
  askName();
}

ui.joinForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = ui.joinName.value.trim();
  if (!name) { ui.joinName.focus(); return; }
  const button = ui.joinForm.querySelector("button");
  button.disabled = true;
  try {
    let v;
    try {
      v = await api("POST", "/api/viewers", { body: social.signupBody(name), retries: 2 });
      social.signedUp(v);
    } catch (err) {
      // A stale or refused referral code must not keep anyone out.
      if (err.code !== "unknown_referral" && err.code !== "referral_refused") throw err;
      v = await api("POST", "/api/viewers", { body: { name }, retries: 2 });
    }
    state.viewer = { viewer_id: v.viewer_id, name: v.name ?? name, token: v.token };
    save(VIEWER, state.viewer);
    ui.join.close();
    connect();
  } catch (err) {
    flash(ui.joinMsg, err.words ?? errorText("unknown"), { error: true, ms: 0 });
  } finally {
    button.disabled = false;
  }
});

function needViewer() {
  if (state.viewer) return true;
  askName();
  return false;
}

// --- chat and likes ------------------------------------------------------------------

ui.commentForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = ui.commentText.value.trim();
  if (!text || state.ended || !needViewer()) return;
  if (state.socket?.send({ type: "comment", text })) ui.commentText.value = "";
  else flash(ui.composerMsg, errorText("network"), { error: true });
});

ui.like.addEventListener("click", () => {
  if (state.ended || !needViewer()) return;
  if (state.socket?.send({ type: "like" })) hearts(1);
});

// --- buying (watch-buying.js) -----------------------------------------------------------

const { current, upsertReservation, renderReservation, renderMyOrders, refreshMine } = watchBuying({
  sid, ui, state, ordersKey, featuredSku, renderOffer, needViewer, forgetViewer,
});

const social = watchSocial({ sid, state, needViewer, forgetViewer, upsertReservation });

// --- countdowns ----------------------------------------------------------------------

function tick() {
  const sku = featuredSku();
  const sale = sku && state.sales.get(sku);
  if (sale) {
    const left = sale.ends_at - serverNow();
    ui.countdown.textContent = formatDuration(left);
    ui.countdown.classList.toggle("urgent", left < 10_000);
  }
  const r = current();
  if (r && r.status === "reserved") renderReservation();
  social.tick();
}
setInterval(tick, 250);

// --- start ---------------------------------------------------------------------------

function connect() {
  state.socket?.stop();
  ui.comments.replaceChildren();
  state.socket = new LiveSocket(sid, {
    token: state.viewer?.token,
    backfillCount: 50,
    hello: (s, { recovered }) => {
      applyState(s);
      if (!recovered) renderMyOrders();
      social.refresh(); // group buys are not in the stream state: fetch them at every (re)connect
    },
    message: onMessage,
    backfill: onBackfill,
    personal: onPersonal,
    state: setConn,
    missed: () => { ui.missed.hidden = false; },
    retry: (attempt) => { if (attempt === 3) whyNoSocket(); },
  });
  state.socket.start();
}

// A handshake the service refuses looks like any dropped socket to a page: after a few
// failed tries, ask the API why (stream gone or ended, viewer token expired).
async function whyNoSocket() {
  try {
    const s = await api("GET", `/api/streams/${sid}`);
    if (s.status === "ended") { applyState(s); return; }
  } catch (err) {
    if (err.code === "unknown_stream") { state.socket?.stop(); setConn("offline"); }
    return;
  }
  if (!state.viewer) return;
  try {
    await api("GET", "/api/reservations/r_probe", { token: state.viewer.token });
  } catch (err) {
    if (err.code === "unauthorized") forgetViewer();
  }
}

$("#missed-close").addEventListener("click", () => { ui.missed.hidden = true; });

async function main() {
  renderMyOrders();
  try {
    applyState(await api("GET", `/api/streams/${sid}`, { retries: 3 }));
  } catch (err) {
    ui.title.textContent = err.code === "unknown_stream" ? t("unknown_stream_page") : err.words;
    setConn("offline");
    return;
  }
  if (state.ended) return;
  connect();
  if (!state.viewer) askName();
  else social.bindIfReferred();
  refreshMine();
}

main();

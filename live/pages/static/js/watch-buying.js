// The watch page's buying: Buy → a held reservation with its countdown → Pay or Cancel,
// and "my orders" (this viewer's reservations in the stream, kept in the browser).
import {
  api, el, errorText, flash, formatDuration, formatMoney, formatTime, newKey, save,
  serverNow, t,
} from "./common.js";

/** ui and state are the page's; the functions are the page's own. */
export function watchBuying({ sid, ui, state, ordersKey, featuredSku, renderOffer, needViewer, forgetViewer }) {

  ui.buy.addEventListener("click", async () => {
    if (state.ended || !needViewer()) return;
    const sku = featuredSku();
    if (!sku) return;
    const sale = state.sales.get(sku);
    const body = { sku, qty: Number(ui.qty.value) || 1, key: newKey() };
    if (sale) body.sale_id = sale.id;
    ui.buy.disabled = true;
    flash(ui.offerMsg, "");
    try {
      // The same key on every retry: a buy is never made twice.
      const r = await api("POST", `/api/streams/${sid}/reservations`, { body, token: state.viewer.token, retries: 2 });
      upsertReservation(r, true);
    } catch (err) {
      if (err.code === "unauthorized") forgetViewer();
      else flash(ui.offerMsg, err.words ?? errorText("unknown"), { error: true });
    } finally {
      renderOffer();
    }
  });

  async function settle(method, path) {
    const r = current();
    if (!r || !state.viewer) return;
    ui.pay.disabled = ui.cancel.disabled = true;
    try {
      const answer = await api(method, path(r.id), { token: state.viewer.token, retries: 2 });
      upsertReservation({ ...r, ...answer });
    } catch (err) {
      if (err.code === "expired") upsertReservation({ ...r, status: "expired" });
      else if (err.code === "cancelled") upsertReservation({ ...r, status: "cancelled" });
      else flash(ui.offerMsg, err.words ?? errorText("unknown"), { error: true });
    } finally {
      ui.pay.disabled = ui.cancel.disabled = false;
      renderReservation();
    }
  }
  ui.pay.addEventListener("click", () => settle("POST", (id) => `/api/reservations/${id}/confirm`));
  ui.cancel.addEventListener("click", () => settle("DELETE", (id) => `/api/reservations/${id}`));

  const current = () => state.mine.find((r) => r.id === state.current) || null;

  function upsertReservation(r, show = false) {
    if (!r || !r.id || (r.stream_id && r.stream_id !== sid)) return;
    const i = state.mine.findIndex((x) => x.id === r.id);
    if (i >= 0) state.mine[i] = { ...state.mine[i], ...r };
    else state.mine.unshift(r);
    state.mine = state.mine.slice(0, 50);
    save(ordersKey, state.mine);
    if (show || r.status === "reserved" || r.id === state.current) state.current = r.id;
    renderReservation();
    renderMyOrders();
  }

  function renderReservation() {
    const r = current();
    ui.reservation.hidden = !r;
    if (!r) return;
    const held = r.status === "reserved" && r.expires_at > serverNow();
    ui.reservation.dataset.status = held ? "reserved" : r.status;
    ui.pay.hidden = ui.cancel.hidden = !held;
    if (held) ui.resStatus.textContent = t("held_for_you", { time: formatDuration(r.expires_at - serverNow()) });
    else if (r.status === "paid") ui.resStatus.textContent = t("res_paid", { id: r.order_id || "" });
    else if (r.status === "cancelled") ui.resStatus.textContent = t("res_cancelled");
    else if (r.status === "group_pending" || r.status === "refunded") {
      ui.resStatus.textContent = t(`res_${r.status}`);
    }
    else ui.resStatus.textContent = t("res_expired");
  }

  function renderMyOrders() {
    const rows = state.mine.map((r) => {
      const product = state.products.get(r.sku);
      const status = r.status === "reserved" && r.expires_at <= serverNow() ? "expired" : r.status;
      return el("li", { testid: "my-order-row", "data-status": status },
        el("span", { class: "item", text: `${product ? product.title : r.sku} × ${r.qty}` }),
        el("span", { class: "amount", text: formatMoney(r.price_cents * r.qty) }),
        el("span", { class: `badge ${status}`, text: t(`status_${status}`) }),
        el("time", { class: "muted", text: formatTime(r.created_at || r.expires_at || Date.now()) }));
    });
    ui.myOrders.replaceChildren(...rows);
    ui.myOrdersCount.textContent = String(rows.length);
    ui.myOrdersEmpty.hidden = rows.length > 0;
    // Open once there is something in it (and after every purchase); the viewer may fold it.
    if (rows.length > ui.shownOrders) ui.myOrdersBox.open = true;
    ui.shownOrders = rows.length;
  }

  async function refreshMine() {
    if (!state.viewer) return;
    for (const r of state.mine.slice(0, 20)) {
      if (r.status !== "reserved") continue;
      try {
        upsertReservation(await api("GET", `/api/reservations/${r.id}`, { token: state.viewer.token }));
      } catch (err) {
        if (err.code === "not_found") upsertReservation({ ...r, status: "expired" });
      }
    }
  }

  return { current, upsertReservation, renderReservation, renderMyOrders, refreshMine };
}

// The host console's social selling: group-buy offers (start one, the list) and
// referral commissions (the rates form and the per-referrer report, polled like orders).
import { $, el, errorText, flash, formatMoney, parseMoney, t } from "./common.js";

/** host(method, path, body) is the console's authorised API call; state is the console's. */
export function hostSocial({ sid, host, state }) {
  const ui = {
    gbForm: $("#gb-form"),
    gbMsg: $("#gb-msg"),
    gbs: $("#group-buys"),
    noGbs: $("#no-group-buys"),
    rateForm: $("#commission-form"),
    rateMsg: $("#commission-msg"),
    refs: $("#referrals"),
    noRefs: $("#no-referrals"),
  };
  const buys = new Map();

  function renderBuys() {
    const rows = [...buys.values()].sort((a, b) => b.created_at - a.created_at).map((gb) =>
      el("li", { testid: "group-buy-row", "data-status": gb.status },
        el("span", { text: t("gb_row", {
          sku: gb.sku, price: formatMoney(gb.group_price_cents), size: gb.group_size, window: gb.window_s,
        }) }), " ",
        el("span", { class: "badge", text: t(`gb_status_${gb.status === "active" ? "active" : "closed"}`) })));
    ui.gbs.replaceChildren(...rows);
    ui.noGbs.hidden = rows.length > 0;
  }

  ui.gbForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(ui.gbForm);
    const price = parseMoney(String(f.get("price")));
    const body = {
      sku: String(f.get("sku")).trim(), group_price_cents: price,
      group_size: Number(f.get("size")), window_s: Number(f.get("window")),
    };
    if (!body.sku || price === null || !Number.isInteger(body.group_size) || !Number.isInteger(body.window_s)) {
      flash(ui.gbMsg, errorText("invalid_body"), { error: true });
      return;
    }
    try {
      const gb = await host("POST", `/api/streams/${sid}/group-buys`, body);
      buys.set(gb.id, gb);
      renderBuys();
      flash(ui.gbMsg, t("group_buy_started"));
    } catch (err) { flash(ui.gbMsg, err.words, { error: true }); }
  });

  async function loadBuys() {
    try {
      const out = await host("GET", `/api/streams/${sid}/group-buys`);
      for (const gb of out.group_buys || []) buys.set(gb.id, gb);
      renderBuys();
    } catch { /* the next message or reload */ }
  }

  // Rates are typed in percent (two decimals at most) and sent in basis points.
  const toBps = (text) => parseMoney(String(text || "0"));
  const toPercent = (bps) => (bps / 100).toString();

  ui.rateForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(ui.rateForm);
    const body = { level1_bps: toBps(f.get("l1")), level2_bps: toBps(f.get("l2")) };
    if (body.level1_bps === null || body.level2_bps === null) {
      flash(ui.rateMsg, errorText("invalid_body"), { error: true });
      return;
    }
    try {
      await host("PUT", `/api/streams/${sid}/commission`, body);
      flash(ui.rateMsg, t("commission_saved"));
    } catch (err) { flash(ui.rateMsg, err.words, { error: true }); }
  });

  let ratesShown = false;

  async function pollReferrals() {
    let out;
    try { out = await host("GET", `/api/streams/${sid}/referrals`); } catch { return; }
    if (!ratesShown && typeof out.level1_bps === "number") {
      // Filled once: after that the form is the host's to edit.
      ratesShown = true;
      ui.rateForm.elements.l1.value = toPercent(out.level1_bps);
      ui.rateForm.elements.l2.value = toPercent(out.level2_bps ?? 0);
    }
    const rows = (out.referrers || []).map((r) => el("tr", { testid: "referral-row", "data-viewer": r.viewer_id },
      el("td", { text: state.names.get(r.viewer_id) || r.viewer_id }),
      el("td", { class: "num", text: String(r.referred) }),
      el("td", { class: "num", text: String(r.orders) }),
      el("td", { class: "num", text: formatMoney(r.gmv_cents) }),
      el("td", { class: "num", "data-value": String(r.commission_cents), text: formatMoney(r.commission_cents) })));
    ui.refs.replaceChildren(...rows);
    ui.noRefs.hidden = rows.length > 0;
  }

  function onMessage(msg) {
    const d = msg.data || {};
    if (msg.type === "groupbuy.started" && d.id) { buys.set(d.id, d); renderBuys(); }
    else if (msg.type === "groupbuy.closed" && d.id) { buys.set(d.id, { ...d, status: "closed" }); renderBuys(); }
    else if (msg.type === "group.formed") pollReferrals();
  }

  return { loadBuys, pollReferrals, onMessage, forms: [ui.gbForm, ui.rateForm] };
}

// The watch page's social selling: the stream's running group buy (start a group, join
// one from a share link, its progress and countdown) and "Invite friends" (the viewer's
// referral link; arriving with ?ref= binds the newcomer to whoever shared it).
import {
  $, api, byTestId, errorText, flash, formatDuration, formatMoney, load, newKey, save,
  serverNow, t,
} from "./common.js";

const params = new URLSearchParams(location.search);

/** ui/state are the page's; upsertReservation shows a group member's hold in the Pay panel. */
export function watchSocial({ sid, state, needViewer, forgetViewer, upsertReservation }) {
  const groupKey = `livecart.group.${sid}`;
  const boundKey = `livecart.refbound.${sid}`;
  const ui = {
    box: $("#groupbuy"),
    product: $("#gb-product"),
    price: byTestId("group-price"),
    size: $("#gb-size-text"),
    start: byTestId("start-group"),
    join: byTestId("join-group"),
    mine: $("#my-group"),
    progress: byTestId("group-progress"),
    share: byTestId("group-share-link"),
    copyShare: $("#copy-group"),
    msg: $("#gb-msg"),
    invite: $("#invite-friends"),
    inviteBox: $("#invite-box"),
    refLink: byTestId("referral-link"),
    copyRef: $("#copy-referral"),
    inviteMsg: $("#invite-msg"),
  };
  const social = {
    buys: new Map(), // id -> group buy
    group: load(groupKey, null), // the viewer's group: public group + reservation_id
    shared: params.get("group"), // the share code this page was opened with
    sharedGroup: null,
  };
  const ref = params.get("ref");

  const activeBuy = () => {
    let best = null;
    for (const gb of social.buys.values()) {
      if (gb.status === "active" && (!best || gb.created_at > best.created_at)) best = gb;
    }
    return best;
  };

  function render() {
    const gb = activeBuy();
    const g = social.group;
    const offered = social.sharedGroup && (!g || g.group_id !== social.sharedGroup.group_id)
      && social.sharedGroup.status === "open" ? social.sharedGroup : null;
    ui.box.hidden = !gb && !g && !offered;
    if (ui.box.hidden) return;
    const shown = gb || offered || g;
    const product = state.products.get(shown.sku);
    ui.product.textContent = product ? product.title : shown.sku;
    ui.price.textContent = formatMoney(shown.group_price_cents ?? shown.price_cents);
    ui.size.textContent = t("group_of", { size: shown.group_size });
    const inOpenGroup = g && g.status === "open";
    ui.join.hidden = !offered || inOpenGroup || state.ended;
    ui.start.hidden = !gb || inOpenGroup || Boolean(offered) || state.ended;
    ui.mine.hidden = !g;
    if (g) renderProgress(g);
  }

  function renderProgress(g) {
    ui.progress.dataset.status = g.status;
    if (g.status === "formed") ui.progress.textContent = t("group_formed");
    else if (g.status === "failed") ui.progress.textContent = t("group_failed");
    else {
      ui.progress.textContent = t("group_progress", {
        members: g.members, size: g.group_size, paid: g.paid, needed: g.needed,
        time: formatDuration(Math.max(0, g.expires_at - serverNow())),
      });
    }
    ui.share.value = `${location.origin}/s/${sid}?group=${g.share_code}`;
  }

  function keepGroup(g) {
    social.group = g;
    save(groupKey, g);
    render();
  }

  async function enter(path) {
    if (state.ended || !needViewer()) return;
    ui.start.disabled = ui.join.disabled = true;
    flash(ui.msg, "");
    try {
      // One key per click; the API's retry of the same key answers the same group.
      const out = await api("POST", path, { body: { key: newKey() }, token: state.viewer.token, retries: 2 });
      const { reservation, ...group } = out;
      keepGroup({ ...group, reservation_id: reservation?.id });
      if (reservation) upsertReservation({ ...reservation, stream_id: sid }, true);
    } catch (err) {
      if (err.code === "unauthorized") forgetViewer();
      else flash(ui.msg, err.words ?? errorText("unknown"), { error: true });
    } finally {
      ui.start.disabled = ui.join.disabled = false;
    }
  }

  ui.start.addEventListener("click", () => {
    const gb = activeBuy();
    if (gb) enter(`/api/group-buys/${encodeURIComponent(gb.id)}/groups`);
  });
  ui.join.addEventListener("click", () => {
    if (social.shared) enter(`/api/groups/${encodeURIComponent(social.shared)}/join`);
  });

  /** A group's news: the viewer's own group moves, and its hold follows the outcome. */
  function groupNews(d) {
    if (social.sharedGroup && d.group_id === social.sharedGroup.group_id) {
      social.sharedGroup = { ...social.sharedGroup, ...d };
    }
    const g = social.group;
    if (!g || d.group_id !== g.group_id) { render(); return; }
    keepGroup({ ...g, ...d });
    const r = state.mine.find((x) => x.id === g.reservation_id);
    if (r && d.status === "formed") upsertReservation({ ...r, status: "paid" });
    if (r && d.status === "failed") {
      upsertReservation({ ...r, status: r.status === "group_pending" ? "refunded" : "expired" });
    }
  }

  function onMessage(msg) {
    const d = msg.data || {};
    switch (msg.type) {
      case "groupbuy.started": social.buys.set(d.id, d); render(); break;
      case "groupbuy.closed": if (d.id) social.buys.set(d.id, { ...d, status: "closed" }); render(); break;
      case "group.progress": case "group.formed": case "group.failed": groupNews(d); break;
      case "stream.ended": social.buys.clear(); render(); break;
      default: break;
    }
  }

  async function refresh() {
    try {
      const out = await api("GET", `/api/streams/${sid}/group-buys`, { retries: 2 });
      social.buys = new Map((out.group_buys || []).map((gb) => [gb.id, gb]));
    } catch { /* the socket brings the next one */ }
    const g = social.group;
    for (const [ref_, apply] of [
      [g?.group_id, (x) => keepGroup({ ...g, ...x })],
      [social.shared, (x) => { social.sharedGroup = x; }],
    ]) {
      if (!ref_) continue;
      try { apply(await api("GET", `/api/groups/${encodeURIComponent(ref_)}`, { retries: 1 })); } catch (err) {
        if (err.code === "unknown_group" && ref_ === social.shared) flash(ui.msg, err.words, { error: true });
      }
    }
    render();
  }

  function tick() {
    if (social.group?.status === "open") renderProgress(social.group);
  }

  // --- invite friends ------------------------------------------------------------------

  ui.invite.addEventListener("click", async () => {
    if (!needViewer()) return;
    try {
      const link = await api("POST", `/api/streams/${sid}/referral-links`, { token: state.viewer.token, retries: 2 });
      // Through this page's own origin (the service may sit behind a proxy).
      ui.refLink.value = `${location.origin}/s/${sid}?ref=${encodeURIComponent(link.code)}`;
      ui.inviteBox.hidden = false;
    } catch (err) {
      if (err.code === "unauthorized") forgetViewer();
      else flash(ui.inviteMsg, err.words ?? errorText("unknown"), { error: true });
    }
  });

  for (const [button, input] of [[ui.copyShare, ui.share], [ui.copyRef, ui.refLink]]) {
    button.addEventListener("click", async () => {
      try { await navigator.clipboard.writeText(input.value); } catch {
        input.select();
        document.execCommand?.("copy");
      }
      button.textContent = t("copied");
      setTimeout(() => { button.textContent = t("copy"); }, 1500);
    });
  }

  /** The body of sign-up: with the referral code the page was opened with. */
  const signupBody = (name) => (ref ? { name, ref } : { name });

  function signedUp(answer) {
    if (ref && answer?.referral) save(boundKey, ref);
  }

  /** A viewer signed up before arriving with ?ref= binds now (first touch wins). */
  async function bindIfReferred() {
    if (!ref || !state.viewer || load(boundKey, null) === ref) return;
    try {
      await api("POST", `/api/streams/${sid}/referrals/bind`, { body: { ref }, token: state.viewer.token, retries: 2 });
      save(boundKey, ref);
    } catch (err) {
      if (err.code === "referral_refused" || err.code === "unknown_referral") save(boundKey, ref);
      if (err.code !== "unauthorized") flash(ui.inviteMsg, err.words ?? errorText("unknown"), { error: true });
    }
  }

  return { onMessage, refresh, tick, render, signupBody, signedUp, bindIfReferred };
}

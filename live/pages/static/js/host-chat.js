// The host console's chat: the live comment feed with delete and mute on each comment,
// the host's messages to viewers, and banned words.
import { el, flash, t } from "./common.js";

/** host(method, path, body) calls the API with the host token; ui and state are the
 * console's. Returns what the console's message handlers call. */
export function hostChat({ sid, host, ui, state }) {

  function addComment(msg, older) {
    const d = msg.data;
    if (!d || !d.id || ui.comments.querySelector(`[data-id="${CSS.escape(d.id)}"]`)) return;
    const vid = d.user?.id;
    if (vid && d.user?.name) state.names.set(vid, d.user.name);
    const del = el("button", { type: "button", class: "small", testid: "delete-comment", onclick: () => deleteComment(d.id) }, t("delete"));
    const mute = el("button", { type: "button", class: "small", testid: "mute-viewer", "data-viewer": vid, onclick: () => toggleMute(vid) });
    const row = el("li", { testid: "comment-row", "data-id": d.id, "data-seq": msg.seq, "data-viewer": vid },
      el("span", { class: "who", text: d.user?.name || "?" }), " ", el("span", { class: "what", text: d.text }),
      el("span", { class: "actions" }, del, mute));
    paintMute(row);
    const stick = ui.comments.scrollHeight - ui.comments.scrollTop - ui.comments.clientHeight < 80;
    let before = null;
    if (older) {
      for (const other of ui.comments.children) if (Number(other.dataset.seq) > msg.seq) { before = other; break; }
    }
    ui.comments.insertBefore(row, before);
    while (ui.comments.children.length > 300) ui.comments.firstElementChild.remove();
    ui.noComments.hidden = true;
    if (stick || older) ui.comments.scrollTop = ui.comments.scrollHeight;
  }

  function paintMute(row) {
    const vid = row.dataset.viewer;
    const muted = state.muted.has(vid);
    const button = row.querySelector('[data-testid="mute-viewer"]');
    button.textContent = muted ? t("unmute") : t("mute");
    button.setAttribute("aria-pressed", muted ? "true" : "false");
    row.classList.toggle("muted", muted);
  }

  async function deleteComment(id) {
    try {
      await host("DELETE", `/api/streams/${sid}/comments/${encodeURIComponent(id)}`);
      removeComment(id);
    } catch (err) {
      if (err.code === "unknown_comment") removeComment(id);
      else flash(ui.messageMsg, err.words, { error: true });
    }
  }

  function removeComment(id) {
    ui.comments.querySelector(`[data-id="${CSS.escape(id)}"]`)?.remove();
    ui.noComments.hidden = ui.comments.children.length > 0;
  }

  async function toggleMute(vid) {
    if (!vid) return;
    try {
      if (state.muted.has(vid)) {
        await host("DELETE", `/api/streams/${sid}/mutes/${encodeURIComponent(vid)}`);
        state.muted.delete(vid);
      } else {
        await host("POST", `/api/streams/${sid}/mutes`, { viewer_id: vid });
        state.muted.add(vid);
      }
      for (const row of ui.comments.querySelectorAll(`[data-viewer="${CSS.escape(vid)}"]`)) {
        if (row.matches("li")) paintMute(row);
      }
    } catch (err) { flash(ui.messageMsg, err.words, { error: true }); }
  }

  async function loadModeration() {
    try {
      const mutes = await host("GET", `/api/streams/${sid}/mutes`);
      const list = mutes.viewer_ids || mutes.mutes || mutes.viewers || [];
      state.muted = new Set(list.map((m) => (typeof m === "string" ? m : m.viewer_id)));
      for (const row of ui.comments.children) paintMute(row);
    } catch { /* shown as not muted */ }
    try {
      const words = await host("GET", `/api/streams/${sid}/banned-words`);
      ui.banned.value = (words.words || []).join("\n");
    } catch { /* left empty */ }
  }

  ui.messageForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = ui.messageForm.elements[0];
    const text = input.value.trim();
    if (!text) return;
    try {
      await host("POST", `/api/streams/${sid}/messages`, { text });
      input.value = "";
      flash(ui.messageMsg, t("sent"), { ms: 2000 });
    } catch (err) { flash(ui.messageMsg, err.words, { error: true }); }
  });

  ui.bannedForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const words = [...new Set(ui.banned.value.split(/[\n,，]/).map((w) => w.trim()).filter(Boolean))];
    try {
      await host("PUT", `/api/streams/${sid}/banned-words`, { words });
      flash(ui.bannedMsg, t("saved"), { ms: 2000 });
    } catch (err) { flash(ui.bannedMsg, err.words, { error: true }); }
  });

  return { addComment, removeComment, loadModeration };
}

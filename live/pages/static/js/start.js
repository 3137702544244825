// The start page: go live (→ the host console of the new stream), the streams this
// browser started, and the public directory of live streams.
import { $, api, el, flash, formatTime, hostedStreams, rememberHosted, t, withLang } from "./common.js";

const form = $("#go-live-form");
const msg = $("#go-live-msg");
const directory = $("#directory");
const more = $("#directory-more");
let cursor = null;

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const title = form.elements.title.value.trim();
  const hostName = form.elements.host_name.value.trim();
  if (!title) { form.elements.title.focus(); return; }
  if (!hostName) { form.elements.host_name.focus(); return; }
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const s = await api("POST", "/api/streams", { body: { title, host_name: hostName }, retries: 1 });
    rememberHosted({ id: s.id, title: s.title, token: s.host_token, created_at: s.created_at });
    // The token goes in the fragment: the browser never sends it to the server in a URL.
    location.assign(withLang(`/host/${s.id}#token=${encodeURIComponent(s.host_token)}`));
  } catch (err) {
    flash(msg, err.words, { error: true, ms: 0 });
    button.disabled = false;
  }
});

function renderMine() {
  const mine = hostedStreams();
  $("#mine").replaceChildren(...mine.map((s) => el("li", {},
    el("a", { href: withLang(`/host/${s.id}#token=${encodeURIComponent(s.token)}`), text: s.title || s.id }),
    el("span", { class: "muted", text: s.created_at ? ` · ${formatTime(s.created_at)}` : "" }),
    " ", el("a", { class: "secondary small", href: withLang(`/s/${s.id}`), text: t("watch") }))));
  $("#mine-empty").hidden = mine.length > 0;
}

async function loadDirectory() {
  more.disabled = true;
  try {
    const q = cursor ? `?limit=20&cursor=${encodeURIComponent(cursor)}` : "?limit=20";
    const page = await api("GET", `/api/streams${q}`, { retries: 2 });
    for (const s of page.streams) {
      directory.append(el("li", { testid: "stream-entry", class: s.status },
        el("a", { href: withLang(`/s/${s.id}`), text: s.title }),
        el("span", { class: "muted", text: ` · ${s.host_name} · ` }),
        s.status === "live"
          ? el("span", { class: "badge live", text: t("n_watching", { n: s.viewers }) })
          : el("span", { class: "badge", text: t("status_ended") })));
    }
    cursor = page.next_cursor;
    more.hidden = !cursor;
    $("#directory-empty").hidden = directory.children.length > 0;
  } catch (err) {
    flash($("#directory-msg"), err.words, { error: true, ms: 0 });
  } finally {
    more.disabled = false;
  }
}

more.addEventListener("click", loadDirectory);
renderMine();
loadDirectory();

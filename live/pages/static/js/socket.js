// The stream's websocket: reconnects with back-off and resumes where it left off, so the
// page sees every broadcast message once, in order (or is told it missed some).
import { sawServerTime } from "./common.js";

const PING_EVERY_MS = 20_000;
const PONG_WITHIN_MS = 10_000;
const GAP_WAIT_MS = 5_000; // a hole the replay has not filled by then is given up on
const MAX_BACKOFF_MS = 15_000;

export class LiveSocket {
  /**
   * backfillCount: how many broadcast messages before the first hello to fetch (older
   * comments). handlers: hello(state, {recovered}), message(msg) for broadcast messages in seq order,
   * backfill(msg) for older comments fetched after the first hello, personal(msg) for
   * per-viewer messages (reservation, error, pong), state(name), missed().
   */
  constructor(sid, { token = null, backfillCount = 0, ...handlers }) {
    this.sid = sid;
    this.token = token;
    this.backfillCount = backfillCount;
    this.on = handlers;
    this.ws = null;
    this.last = null; // seq of the last broadcast message applied
    this.backfillUpto = 0;
    this.backfillLast = 0;
    this.buffer = new Map(); // seq -> message that came before the ones it follows
    this.gapTimer = null;
    this.attempt = 0;
    this.stopped = false;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.held = null; // a reconnect hello kept until the resume replay answers
    addEventListener("online", () => this.reconnectNow());
    addEventListener("offline", () => this.setState("offline"));
  }

  start() { this.connect(); }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.stopTimers();
    if (this.ws) this.ws.close(1000);
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  setState(name) {
    if (this.state === name) return;
    this.state = name;
    this.on.state?.(name);
  }

  connect() {
    if (this.stopped) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = this.token ? `?token=${encodeURIComponent(this.token)}` : "";
    const ws = new WebSocket(`${scheme}://${location.host}/ws/streams/${this.sid}${query}`, ["live.json"]);
    this.ws = ws;
    this.setState(this.last === null ? "connecting" : "reconnecting");
    ws.onmessage = (ev) => { if (ws === this.ws) this.receive(ev.data); };
    ws.onclose = (ev) => { if (ws === this.ws) this.closed(ev); };
  }

  closed(ev) {
    this.backfilling = false;
    this.stopTimers();
    this.ws = null;
    if (this.stopped) return;
    if (ev.code === 1000 && this.ended) { this.setState("ended"); return; }
    this.setState(navigator.onLine === false ? "offline" : "reconnecting");
    const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt = Math.min(this.attempt + 1, 10);
    this.on.retry?.(this.attempt);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.retryTimer);
    this.attempt = 0;
    this.connect();
  }

  stopTimers() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
    this.pingTimer = this.pongTimer = null;
  }

  keepAlive() {
    this.stopTimers();
    // A socket that died silently (a laptop lid, a lost Wi-Fi) answers no ping: drop it.
    this.pingTimer = setInterval(() => {
      if (!this.send({ type: "ping" })) return;
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => this.ws && this.ws.close(4000, "no pong"), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  receive(raw) {
    let msg;
    try { msg = JSON.parse(raw); } catch { return; }
    sawServerTime(msg.ts);
    clearTimeout(this.pongTimer);
    if (msg.type === "hello") { this.hello(msg); return; }
    if (typeof msg.seq !== "number") {
      if (msg.type === "error" && msg.data?.code === "rate_limited" && this.held) {
        // The resume itself was refused: take the fresh state and say what was missed.
        this.fresh(this.held, true);
        return;
      }
      if (msg.type !== "pong") this.on.personal?.(msg);
      return;
    }
    this.broadcast(msg);
  }

  hello(msg) {
    const state = msg.data;
    this.attempt = 0;
    this.setState("live");
    this.keepAlive();
    if (this.last === null) {
      this.fresh(msg, false);
      if (this.backfillCount > 0 && msg.seq > 0) {
        this.backfillUpto = msg.seq;
        this.backfilling = true;
        this.send({ type: "resume", after: Math.max(0, msg.seq - this.backfillCount) });
      }
    } else if (state.recovered === false) {
      // Older comments the history no longer holds are no loss; anything else is.
      this.fresh(msg, !this.backfilling);
    } else if (msg.seq > this.last) {
      // Reconnected after missing some: ask for them; the hello is kept in case the
      // history no longer has them (then a second hello says recovered: false).
      this.held = msg;
      this.send({ type: "resume", after: this.last });
    } else if (msg.seq < this.last) {
      this.fresh(msg, false); // the service's state went back: start from it
    }
  }

  fresh(msg, missed) {
    this.held = null;
    this.last = msg.seq;
    for (const seq of [...this.buffer.keys()]) if (seq <= this.last) this.buffer.delete(seq);
    this.on.hello?.(msg.data, { recovered: !missed });
    if (missed) this.on.missed?.();
    this.drain();
  }

  broadcast(msg) {
    const seq = msg.seq;
    if (seq <= this.backfillUpto && seq > this.backfillLast && this.last !== null) {
      this.backfillLast = seq;
      this.on.backfill?.(msg);
      return;
    }
    if (this.last === null || seq <= this.last) return; // seen already (a replay overlap)
    if (seq === this.last + 1) {
      this.held = null;
      this.backfilling = false;
      this.apply(msg);
      this.drain();
      return;
    }
    this.buffer.set(seq, msg);
    if (!this.gapTimer) {
      this.gapTimer = setTimeout(() => this.giveUpGap(), GAP_WAIT_MS);
    }
  }

  apply(msg) {
    this.last = msg.seq;
    if (msg.type === "stream.ended") this.ended = true;
    this.on.message?.(msg);
  }

  drain() {
    while (this.buffer.has(this.last + 1)) {
      const next = this.buffer.get(this.last + 1);
      this.buffer.delete(this.last + 1);
      this.apply(next);
    }
    if (this.buffer.size === 0) { clearTimeout(this.gapTimer); this.gapTimer = null; }
  }

  giveUpGap() {
    this.gapTimer = null;
    if (this.buffer.size === 0) return;
    if (this.held) { this.fresh(this.held, true); return; }
    const seqs = [...this.buffer.keys()].sort((a, b) => a - b);
    this.on.missed?.();
    for (const seq of seqs) {
      const msg = this.buffer.get(seq);
      this.buffer.delete(seq);
      if (seq > this.last) this.apply(msg);
    }
  }
}

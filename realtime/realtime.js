// realtime.js: the browser client of the unstuck realtime hub.
// A plain ES module, no build step: import { Realtime } from "/realtime/realtime.js".
//
//   const rt = new Realtime("wss://example.com/realtime/ws?token=" + token);
//   rt.on("user", (data) => notify(data));          // messages to this user, on any instance
//   const chat = rt.subscribe("chat:42", (data, meta) => show(data), {
//     presence: true,                                // announce me in presence
//     onReset: () => reloadChat(),                   // history could not cover a gap: reload
//   });
//   await rt.publish("chat:42", { text: "hi" });
//   const here = await rt.presence("chat:42");
//   rt.connect();
//
// The client keeps each channel's last offset and epoch, and on every
// reconnect, to whichever instance, resubscribes with them so the hub
// replays what was missed or says recovered:false. Reconnects back off
// exponentially with full jitter; a drain close (1012) carries the server's
// hint for the first delay.

const RECONNECT_CODES_NEVER = new Set([1000]);

export class Realtime {
  // url: a ws:// or wss:// URL, or a (possibly async) function returning
  // one, called before each connection (to fetch a fresh token).
  constructor(url, options = {}) {
    this.url = url;
    this.options = { minDelay: 500, maxDelay: 30000, userChannel: true, ...options };
    this.subs = new Map();
    this.listeners = new Map();
    this.pending = new Map();
    this.nextId = 1;
    this.attempt = 0;
    this.retryHint = 0;
    this.ws = null;
    this.stopped = true;
    this.user = null;
    this.client = null;
    this.timer = null;
    this.pingTimer = null;
  }

  // on(event, fn) returns a function removing the listener. Events:
  // "state" ("connecting" | "connected" | "disconnected"), "user" (data,
  // meta) for messages to this user, "reset" (channel), "error" (frame).
  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return () => this.listeners.get(event).delete(fn);
  }

  emit(event, ...args) {
    for (const fn of this.listeners.get(event) || []) {
      try { fn(...args); } catch (e) { setTimeout(() => { throw e; }); }
    }
  }

  connect() {
    if (!this.stopped) return this;
    this.stopped = false;
    this.open();
    return this;
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pingTimer);
    if (this.ws) this.ws.close(1000, "client closed");
  }

  // subscribe registers onMessage(data, {offset, epoch, local}) for channel
  // and returns { unsubscribe() }.
  subscribe(channel, onMessage, { presence = false, onReset = null } = {}) {
    const sub = { channel, onMessage, presence, onReset, offset: 0, epoch: "", active: false };
    this.subs.set(channel, sub);
    if (this.connected()) this.sendSubscribe(sub);
    return {
      unsubscribe: () => {
        this.subs.delete(channel);
        if (this.connected() && sub.active) this.request({ type: "unsubscribe", channel }).catch(() => {});
      },
    };
  }

  publish(channel, data) {
    return this.request({ type: "publish", channel, data });
  }

  async presence(channel) {
    const r = await this.request({ type: "presence", channel });
    return r.clients || [];
  }

  connected() {
    return this.ws !== null && this.ws.readyState === 1 && this.client !== null;
  }

  request(frame) {
    if (!this.connected()) return Promise.reject(new Error("realtime: not connected"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  sendSubscribe(sub) {
    const frame = { type: "subscribe", channel: sub.channel, presence: sub.presence || undefined };
    if (sub.epoch) Object.assign(frame, { recover: true, offset: sub.offset, epoch: sub.epoch });
    this.request(frame).then((r) => {
      sub.active = true;
      this.applyPosition(sub, r);
    }, (err) => {
      // "unavailable": the backplane is down on this instance; retry.
      if (err.code === "unavailable" && this.subs.get(sub.channel) === sub) {
        setTimeout(() => { if (this.connected()) this.sendSubscribe(sub); }, this.backoff(1));
      } else this.emit("error", err);
    });
  }

  applyPosition(sub, r) {
    sub.offset = r.offset || 0;
    sub.epoch = r.epoch || "";
    if (r.recovered === false) {
      if (sub.onReset) sub.onReset(sub.channel);
      this.emit("reset", sub.channel);
    }
  }

  // Full jitter: a uniform delay in [0, min(max, min * 2^attempt)).
  backoff(attempt) {
    const cap = Math.min(this.options.maxDelay, this.options.minDelay * 2 ** attempt);
    return Math.random() * cap;
  }

  async open() {
    this.emit("state", "connecting");
    let url;
    try {
      url = typeof this.url === "function" ? await this.url() : this.url;
    } catch (e) {
      this.emit("error", e);
      this.scheduleReconnect();
      return;
    }
    if (this.stopped) return;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onmessage = (ev) => this.onFrame(ev.data);
    ws.onclose = (ev) => this.onClose(ws, ev);
  }

  onFrame(text) {
    let f;
    try { f = JSON.parse(text); } catch { return; }
    switch (f.type) {
      case "connected":
        this.client = f.client;
        this.user = f.user;
        this.attempt = 0;
        this.retryHint = 0;
        this.startPing(f.ping_ms || 25000);
        if (this.options.userChannel && !this.subs.has("$user:" + f.user)) {
          // Added, not sent: the loop below subscribes every channel once.
          this.subs.set("$user:" + f.user, {
            channel: "$user:" + f.user, onMessage: (data, meta) => this.emit("user", data, meta),
            presence: false, onReset: null, offset: 0, epoch: "", active: false,
          });
        }
        for (const sub of this.subs.values()) this.sendSubscribe(sub);
        this.emit("state", "connected");
        break;
      case "message": {
        const sub = this.subs.get(f.channel);
        if (!sub) return;
        const local = f.offset === undefined;
        if (!local) { sub.offset = f.offset; sub.epoch = f.epoch; }
        sub.onMessage(f.data, { offset: f.offset, epoch: f.epoch, local });
        break;
      }
      case "subscribed":
        if (f.id && this.pending.has(f.id)) { this.settle(f); break; }
        // Sent by the hub on its own: it lost messages it cannot replay.
        if (this.subs.has(f.channel)) this.applyPosition(this.subs.get(f.channel), f);
        break;
      case "disconnect":
        this.retryHint = f.retry_ms || 0;
        break;
      case "error":
        if (f.id && this.pending.has(f.id)) this.settle(f);
        else this.emit("error", f);
        break;
      default:
        if (f.id && this.pending.has(f.id)) this.settle(f);
    }
    this.lastSeen = Date.now();
  }

  settle(f) {
    const p = this.pending.get(f.id);
    this.pending.delete(f.id);
    if (f.type === "error") {
      const err = new Error(f.message || f.code);
      err.code = f.code;
      err.local = !!f.local;
      p.reject(err);
    } else p.resolve(f);
  }

  // A connection silent for two ping intervals is dead even if TCP has not
  // noticed: close it and reconnect elsewhere.
  startPing(ms) {
    clearInterval(this.pingTimer);
    this.lastSeen = Date.now();
    this.pingTimer = setInterval(() => {
      if (!this.connected()) return;
      if (Date.now() - this.lastSeen > 2 * ms) { this.ws.close(4000, "ping timeout"); return; }
      this.request({ type: "ping" }).catch(() => {});
    }, ms);
  }

  onClose(ws, ev) {
    if (this.ws !== ws) return;
    this.ws = null;
    this.client = null;
    clearInterval(this.pingTimer);
    for (const p of this.pending.values()) p.reject(new Error("realtime: connection closed"));
    this.pending.clear();
    for (const sub of this.subs.values()) sub.active = false;
    this.emit("state", "disconnected", ev.code, ev.reason);
    if (this.stopped || RECONNECT_CODES_NEVER.has(ev.code)) return;
    this.scheduleReconnect(ev.code);
  }

  scheduleReconnect(code) {
    let delay;
    if (code === 1012 && this.retryHint > 0) {
      // Draining: the server already spreads closes; jitter within its hint.
      delay = Math.random() * this.retryHint;
      this.retryHint = 0;
    } else {
      delay = this.backoff(this.attempt);
      this.attempt = Math.min(this.attempt + 1, 30);
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => { if (!this.stopped) this.open(); }, delay);
  }
}

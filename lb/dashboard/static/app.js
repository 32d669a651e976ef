// unstuck lb dashboard: live updates over Server-Sent Events (read with
// fetch so the admin token can go in a header), a hand-drawn SVG chart,
// and admin API actions. No framework, no build step.
"use strict";
(() => {
  const body = document.body;
  body.classList.add("js"); // the action buttons work from here on
  const api = body.dataset.api || "/api";
  const historyLen = +body.dataset.history || 300;
  const TOKEN_KEY = "unstuck.lb.adminToken";
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#2563eb", "#16a34a", "#ea580c", "#9333ea", "#0891b2", "#db2777", "#ca8a04", "#4b5563"];
  const STATE_COLORS = { up: "#22c55e", down: "#ef4444", ejected: "#f59e0b", draining: "#8b5cf6", drained: "#a78bfa" };

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k);
    return e;
  };
  const svg = (tag, attrs) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  };

  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let points = []; // history, oldest first
  let lastId = "";
  let backends = [];
  const colorOf = new Map();
  let abort = null;
  let lastData = 0; // when the stream last delivered bytes

  // ---- token ----
  const tokenForm = $("token-form"), tokenInput = $("token");
  tokenForm.hidden = false;
  $("add-form").hidden = false;
  tokenInput.value = token;
  tokenForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = tokenInput.value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
    flash(token ? "Token kept for this tab." : "Token cleared.");
    restart();
  });
  $("token-forget").addEventListener("click", () => {
    token = ""; tokenInput.value = ""; sessionStorage.removeItem(TOKEN_KEY);
    flash("Token forgotten.");
    restart();
  });
  const authHeaders = (h = {}) => (token ? { ...h, Authorization: "Bearer " + token } : h);

  // ---- flash messages ----
  let flashTimer = 0;
  function flash(msg, isError) {
    const f = $("flash");
    f.textContent = msg;
    f.className = "flash" + (isError ? " error" : "");
    f.hidden = false;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => { f.hidden = true; }, isError ? 8000 : 4000);
  }

  function setFeed(kind, text) {
    const l = $("live");
    l.className = "feed feed-" + kind;
    l.textContent = text;
  }

  // ---- the stream ----
  function restart() {
    if (abort) abort.abort();
    lastId = "";
    connect(0);
  }

  async function connect(attempt) {
    const ctl = new AbortController();
    abort = ctl;
    // Without a token in this tab the request may still carry the Basic
    // credentials a browser signed in with (/?login); the server decides.
    let delay = Math.min(1000 * 2 ** attempt, 10000);
    try {
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (lastId) headers["Last-Event-ID"] = lastId;
      const res = await fetch("dashboard/events", { headers, cache: "no-store", signal: ctl.signal });
      if (res.status === 401) {
        lastData = 0;
        setFeed("locked", token ? "wrong token" : "token needed");
        if (token) flash("The admin token is wrong.", true);
        tokenInput.focus();
        return;
      }
      if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
      setFeed("live", "live");
      lastData = Date.now();
      attempt = 0;
      delay = 1000;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        lastData = Date.now();
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("id: ")) lastId = line.slice(4);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data) apply(JSON.parse(data));
        }
      }
    } catch (err) {
      if (ctl.signal.aborted) return;
    }
    if (ctl.signal.aborted) return;
    lastData = 0; // the backoff below, not the watchdog, paces retries
    setFeed("retry", "reconnecting");
    setTimeout(() => { if (abort === ctl) connect(attempt + 1); }, delay);
  }

  // ---- rendering ----
  function apply(u) {
    backends = u.backends || [];
    backends.forEach((b) => color(b.name));
    if (u.reset) points = u.points || [];
    else points = points.concat(u.points || []);
    if (points.length > historyLen) points = points.slice(points.length - historyLen);
    const up = backends.filter((b) => b.healthy).length;
    $("up").textContent = up + " / " + backends.length;
    $("imbalance").textContent = (u.imbalance ?? 1).toFixed(2);
    $("panic").hidden = !u.panic;
    const at = new Date(u.at);
    $("updated").replaceChildren(el("time", { dateTime: at.toISOString() }, clock(at)));
    renderTable();
    renderChart();
    renderEvents(u.events || [], u.reset);
  }

  function color(name) {
    if (!colorOf.has(name)) colorOf.set(name, COLORS[colorOf.size % COLORS.length]);
    return colorOf.get(name);
  }
  const clock = (d) => d.toTimeString().slice(0, 8);
  const fmtMS = (v) => (v === null || v === undefined ? "–" : v < 1 ? v.toFixed(2) + " ms" : v < 100 ? v.toFixed(1) + " ms" : Math.round(v) + " ms");
  const pct = (v) => (v ? (v * 100).toFixed(1) + "%" : "0%");
  const cell = (label, text, cls) => el("td", { "data-label": label, class: cls }, text);

  function renderTable() {
    const tb = document.querySelector("#backends tbody");
    if (!backends.length) {
      tb.replaceChildren(el("tr", { class: "empty" }, el("td", { colSpan: 12 }, "No backends.")));
      return;
    }
    const rows = backends.map((b) => {
      const drainish = b.draining || b.state === "draining" || b.state === "drained";
      const state = cell("State", el("span", { class: "badge st-" + b.state }, b.state));
      // Down and ejected outrank draining in the state word; the drain
      // is still on, so say so.
      if (b.draining && (b.state === "down" || b.state === "ejected")) {
        state.append(" ", el("span", { class: "badge st-draining", title: "a drain is on: no new users when it is back" }, "draining"));
      }
      if (b.removing) state.append(" ", el("span", { class: "badge st-removing" }, "removing"));
      const tr = (b.transitions || []).slice().reverse();
      const health = el("td", { "data-label": "Health, recent", class: "health" }, el("span", { class: "strip" }, strip(b.name)), checks(b.checks),
        el("ol", { class: "transitions" }, ...(tr.length ? tr.slice(0, 1).map((t) => el("li", {}, el("time", { dateTime: t.at }, clock(new Date(t.at))), " " + t.from + " → ", el("span", { class: "st-text-" + t.to }, t.to)))
          : [el("li", { class: "quiet" }, "no change seen")])));
      if (tr.length) health.title = tr.map((t) => clock(new Date(t.at)) + "  " + t.from + " → " + t.to).join("\n");
      const name = el("th", { scope: "row", "data-label": "Backend" },
        el("span", { class: "name" }, el("i", { class: "dot" }), b.name), el("span", { class: "url" }, b.url));
      // Where a discovered backend came from: its DNS source.
      if (b.source) name.append(el("span", { class: "source", title: "discovered from DNS" }, "via " + b.source));
      name.querySelector(".dot").style.cssText = "display:inline-block;width:.6rem;height:.6rem;border-radius:50%;margin-right:.4rem;background:" + color(b.name);
      return el("tr", { "data-name": b.name, "data-state": b.state },
        name, state,
        cell("Req/s", b.rps.toFixed(1), "num"),
        cell("In flight", String(b.in_flight), "num"),
        cell("p50", fmtMS(b.p50_ms), "num"),
        cell("p99", fmtMS(b.p99_ms), "num"),
        cell("Errors", pct(b.error_rate), "num"),
        cell("Pinned users", String(b.pinned_users), "num"),
        cell("WebSockets", String(b.websockets), "num"),
        cell("Weight", String(+b.weight.toFixed(2)), "num"),
        health,
        el("td", { "data-label": "Actions", class: "actions" },
          drainish ? el("button", { type: "button", "data-act": "undrain", "data-name": b.name, ariaLabel: "Undrain " + b.name }, "Undrain")
            : el("button", { type: "button", "data-act": "drain", "data-name": b.name, ariaLabel: "Drain " + b.name }, "Drain"),
          el("button", { type: "button", "data-act": "remove", "data-name": b.name, class: "danger", ariaLabel: "Remove " + b.name }, "Remove")));
    });
    tb.replaceChildren(...rows);
  }

  // checks shows the active health checks of the last minute (null when
  // the backend has none), as the server-rendered page does.
  function checks(c) {
    if (!c) return null;
    const span = c.window_s >= 59.5 ? Math.round(c.window_s / 60) + "m" : Math.round(c.window_s) + "s";
    const s = el("span", { class: "checks", title: "active health checks over the last " + span }, "checks " + span + ": ",
      el("span", { class: "ck-pass" }, c.passed + " passed"), ", ",
      el("span", { class: "ck-fail" + (c.failed ? "" : " ck-none") }, c.failed + " failed"));
    if (c.timed_out > 0) s.append(" (" + c.timed_out + " timed out)");
    return s;
  }

  // strip draws a backend's state over the last 60 samples: its recent
  // health-check and drain history at a glance.
  function strip(name) {
    const recent = points.slice(-60);
    const s = svg("svg", { viewBox: "0 0 60 1", preserveAspectRatio: "none", role: "img" });
    s.append(Object.assign(svg("title"), { textContent: "state over the last " + recent.length + " samples" }));
    const off = 60 - recent.length;
    recent.forEach((p, i) => {
      const st = p.states && p.states[name];
      if (!st) return;
      s.append(svg("rect", { x: off + i, y: 0, width: 1.05, height: 1, fill: STATE_COLORS[st] || "#94a3b8" }));
    });
    return s;
  }

  function niceMax(v) {
    if (v <= 0) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function renderChart() {
    const box = $("chart");
    // Drawn at the box's own width so the labels keep their size on a
    // phone as on a laptop.
    const W = Math.max(300, Math.round(box.clientWidth || 640)), H = W < 500 ? 180 : 220, L = 44, R = 8, T = 10, B = 24;
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "requests per second per backend" });
    if (points.length < 2) {
      box.replaceChildren(el("p", { class: "quiet" }, "Collecting samples…"));
      return;
    }
    const t1 = points[points.length - 1].t;
    const span = Math.max(t1 - points[0].t, 60000);
    const t0 = t1 - span;
    const names = backends.map((b) => b.name);
    for (const p of points) for (const n of Object.keys(p.rps || {})) if (!names.includes(n)) names.push(n);
    let max = 0;
    for (const p of points) for (const v of Object.values(p.rps || {})) max = Math.max(max, v);
    max = niceMax(max);
    const x = (t) => L + ((t - t0) / span) * (W - L - R);
    const y = (v) => T + (1 - v / max) * (H - T - B);
    const grid = svg("g", { class: "grid" });
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4;
      grid.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      const lab = svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" });
      lab.textContent = v >= 100 ? Math.round(v) : +v.toFixed(2);
      grid.append(lab);
    }
    const minutes = span / 60000;
    const step = minutes > 3 ? (W < 500 ? 120000 : 60000) : 30000;
    for (let a = 0; a <= span; a += step) {
      const lab = svg("text", { x: x(t1 - a), y: H - 6, "text-anchor": a === 0 ? "end" : "middle" });
      lab.textContent = a === 0 ? "now" : "-" + (a >= 60000 && a % 60000 === 0 ? a / 60000 + "m" : a / 1000 + "s");
      grid.append(lab);
    }
    s.append(grid);
    for (const n of names) {
      let d = "", pen = "M";
      for (const p of points) {
        const v = p.rps ? p.rps[n] : undefined;
        if (v === undefined) { pen = "M"; continue; }
        d += `${pen}${x(p.t).toFixed(1)},${y(v).toFixed(1)}`;
        pen = "L";
      }
      if (!d) continue;
      const path = svg("path", { d, class: "series", stroke: color(n) });
      path.append(Object.assign(svg("title"), { textContent: n }));
      s.append(path);
    }
    const legend = el("ul", { class: "legend" }, ...names.map((n) => {
      const i = el("i");
      i.style.background = color(n);
      const last = points[points.length - 1].rps?.[n];
      return el("li", {}, i, n + (last !== undefined ? " · " + last.toFixed(1) + "/s" : " · gone"));
    }));
    box.replaceChildren(s, legend);
  }

  function renderEvents(evs, reset) {
    const list = $("events");
    if (reset) list.replaceChildren();
    list.querySelector(".none")?.remove();
    for (const e of evs) {
      if (list.querySelector(`li[data-seq="${e.seq}"]`)) continue;
      const at = new Date(e.at);
      list.prepend(el("li", { class: "lvl-" + e.level, "data-seq": e.seq },
        el("time", { dateTime: e.at, title: at.toLocaleString() }, clock(at)),
        el("span", { class: "kind" }, e.kind), el("span", { class: "text" }, e.text)));
    }
    while (list.children.length > 200) list.lastElementChild.remove();
    if (!list.children.length) list.append(el("li", { class: "quiet none" }, "Nothing has happened yet."));
  }

  // ---- actions: the admin JSON API ----
  async function call(method, path, payload) {
    const headers = authHeaders(payload ? { "Content-Type": "application/json" } : {});
    const res = await fetch(api + path, { method, headers, body: payload ? JSON.stringify(payload) : undefined, cache: "no-store" });
    let data = null;
    try { data = await res.json(); } catch { /* not JSON */ }
    if (res.status === 401) {
      tokenInput.focus();
      throw new Error("The admin token is missing or wrong: enter it above.");
    }
    if (!res.ok) throw new Error((data && data.error) || "HTTP " + res.status);
    return data;
  }

  function patchRow(s) {
    if (!s || !s.name) return;
    const b = backends.find((x) => x.name === s.name);
    if (!b) return;
    Object.assign(b, { state: s.state, draining: s.draining, removing: s.removing });
    renderTable();
  }

  document.querySelector("#backends").addEventListener("click", async (ev) => {
    const btn = ev.target.closest("button[data-act]");
    if (!btn) return;
    const name = btn.dataset.name, act = btn.dataset.act;
    const path = "/backends/" + encodeURIComponent(name);
    if (act === "remove" && !confirm(`Remove ${name}? It drains first, then leaves the balancer.`)) return;
    btn.disabled = true;
    try {
      const s = act === "remove" ? await call("DELETE", path) : await call("POST", path + "/" + act);
      patchRow(s);
      flash(act === "remove" ? `${name}: ${s && s.state === "removed" ? "removed" : "draining, then removed"}` : `${name}: ${act} requested (now ${s ? s.state : "?"})`);
    } catch (err) {
      flash(`${act} ${name}: ${err.message}`, true);
    } finally {
      btn.disabled = false;
    }
  });

  const reload = $("reload");
  reload.hidden = false;
  reload.addEventListener("click", async () => {
    if (!confirm("Reload the balancer's config file? A bad config is refused and the running one kept.")) return;
    reload.disabled = true;
    try {
      const r = await call("POST", "/reload");
      const later = (r && r.restart_needed_for) || [];
      flash("Config reloaded." + (later.length ? " Needs a restart to apply: " + later.join(", ") + "." : ""));
    } catch (err) {
      flash("reload: " + err.message, true);
    } finally {
      reload.disabled = false;
    }
  });

  $("add-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const btn = f.querySelector("button");
    btn.disabled = true;
    try {
      const field = (n) => f.elements.namedItem(n).value.trim();
      const payload = { name: field("name"), url: field("url"), weight: +field("weight") || 1 };
      const s = await call("POST", "/backends", payload);
      flash(`${s.name} added (${s.url}).`);
      f.reset();
    } catch (err) {
      flash("add: " + err.message, true);
    } finally {
      btn.disabled = false;
    }
  });

  // The server sends an update every second; a stream silent for 10 s
  // is dead without having closed (a laptop waking up, a dropped
  // network), so start another that resumes where this one stopped.
  setInterval(() => {
    if (lastData && Date.now() - lastData > 10000 && abort) {
      lastData = 0;
      abort.abort();
      setFeed("retry", "reconnecting");
      connect(0);
    }
  }, 2500);

  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(renderChart, 150);
  });

  connect(0);
})();

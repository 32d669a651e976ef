// The shop's little JavaScript: the live instance strip with chaos buttons,
// upload progress, and the chat room. Everything else is server-rendered.
const me = document.body.dataset.instance;

async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text }; }
  if (!res.ok) throw new Error((data && data.error) || res.statusText);
  return data;
}

// ---- instance strip -------------------------------------------------------
const strip = document.getElementById("strip");

function renderStrip(instances) {
  strip.replaceChildren();
  const label = document.createElement("span");
  label.className = "muted";
  label.textContent = "Instances:";
  strip.append(label);
  for (const inst of instances) {
    const el = document.createElement("span");
    el.className = `inst ${inst.state}` + (inst.name === me ? " me" : "");
    el.dataset.instance = inst.name;
    // Only a serving instance has a rate; the control API sends 0 otherwise.
    const serving = inst.state === "up" || inst.state === "draining";
    const rps = serving && inst.rps !== undefined ? ` · ${inst.rps.toFixed(0)} req/s` : "";
    el.innerHTML = `<span class="dot"></span><b></b><span class="st"></span>`;
    el.querySelector("b").textContent = inst.name;
    el.querySelector(".st").textContent = ` ${inst.state}${rps}`;
    for (const action of inst.state === "down" ? ["restart"] : ["crash", "drain"]) {
      const b = document.createElement("button");
      b.textContent = action;
      b.className = action === "crash" ? "danger" : "ghost";
      b.dataset.action = action;
      b.onclick = () => control(`/api/fleet/${inst.name}/${action}`);
      el.append(b);
    }
    strip.append(el);
  }
  const add = document.createElement("button");
  add.className = "ghost";
  add.textContent = "+ instance";
  add.onclick = () => control("/api/fleet");
  strip.append(add);
}

async function control(path) {
  try { await api("POST", path); } catch (e) { strip.dataset.error = e.message; }
  refreshStrip();
}

async function refreshStrip() {
  try {
    renderStrip(await api("GET", "/api/fleet"));
  } catch (e) {
    strip.textContent = "Instances: unavailable (" + e.message + ")";
  }
}
refreshStrip();
setInterval(refreshStrip, 1000);

// ---- upload progress ------------------------------------------------------
const uploadForm = document.getElementById("upload-form");
const jobsEl = document.getElementById("jobs");

function jobCard(id) {
  let card = jobsEl.querySelector(`[data-job="${CSS.escape(id)}"]`);
  if (!card) {
    card = document.createElement("div");
    card.className = "card job";
    card.dataset.job = id;
    card.style.marginTop = "1rem";
    card.innerHTML = `<div>Job <code></code>: <span class="state">queued</span></div><div class="bar"><div></div></div><pre class="result"></pre>`;
    card.querySelector("code").textContent = id;
    jobsEl.prepend(card);
  }
  return card;
}

function renderJob(card, st) {
  const pct = st.progress ?? st.percent ?? 0;
  const worker = st.worker ? ` on ${st.worker}` : "";
  card.querySelector(".state").textContent = `${st.state} ${pct}%${worker}`;
  card.querySelector(".bar > div").style.width = `${pct}%`;
  if (st.result) card.querySelector(".result").textContent = JSON.stringify(st.result, null, 2);
  if (st.error) card.querySelector(".result").textContent = st.error;
}

const finalStates = ["done", "failed", "cancelled", "dead"];

// followJob listens to the job's progress pushed over Server-Sent Events by
// any instance; when the serving instance dies, EventSource reconnects
// through the balancer to another one, which carries on from the store.
function followJob(id) {
  const card = jobCard(id);
  if (!window.EventSource) return pollJob(id, card);
  const es = new EventSource(`/api/files/${encodeURIComponent(id)}/events`);
  es.addEventListener("status", (ev) => {
    const st = JSON.parse(ev.data);
    renderJob(card, st);
    if (finalStates.includes(st.state)) es.close();
  });
  es.onerror = () => { card.querySelector(".state").dataset.reconnecting = "1"; };
}

async function pollJob(id, card) {
  for (;;) {
    try {
      const st = await api("GET", `/api/files/${encodeURIComponent(id)}`);
      renderJob(card, st);
      if (finalStates.includes(st.state)) return;
    } catch (e) {
      card.querySelector(".state").textContent = `checking… (${e.message})`;
    }
    await new Promise(r => setTimeout(r, 1000));
  }
}

if (uploadForm) {
  // One key per chosen file: the job may exist although the answer was an
  // error (a 503 after it was queued), so sending the same file again with
  // the same key returns that job instead of starting a second one.
  let uploadKey = null;
  uploadForm.addEventListener("change", () => { uploadKey = null; });
  uploadForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const fd = new FormData(uploadForm);
    uploadKey ??= Array.from(crypto.getRandomValues(new Uint8Array(16)), b => b.toString(16).padStart(2, "0")).join("");
    try {
      const res = await fetch("/api/files", { method: "POST", body: fd, headers: { "Idempotency-Key": uploadKey } });
      const data = await res.json();
      if (!res.ok) throw new Error(data.error || res.statusText);
      uploadKey = null;
      uploadForm.reset();
      followJob(data.id);
    } catch (e) {
      alert("Upload failed: " + e.message);
    }
  });
  for (const card of jobsEl.querySelectorAll("[data-job]")) followJob(card.dataset.job);
}

// ---- chat -----------------------------------------------------------------
// History comes from the API (any instance reads the backplane's stream);
// live messages from the realtime WebSocket, which resumes on any instance
// after a reconnect. Offsets order and de-duplicate the two.
const chatlog = document.getElementById("chatlog");
if (chatlog) {
  const { Realtime } = await import("/realtime.js");
  const statusEl = document.getElementById("chat-status");
  const presenceEl = document.getElementById("presence");
  let last = 0;

  const show = (m) => {
    if (m.offset && m.offset <= last) return;
    if (m.offset) last = m.offset;
    const p = document.createElement("p");
    p.dataset.offset = m.offset || "";
    const u = document.createElement("span");
    u.className = "u";
    u.textContent = m.user + ": ";
    const t = document.createElement("span");
    t.className = "t";
    t.textContent = m.text;
    const via = document.createElement("span");
    via.className = "muted";
    via.textContent = m.instance ? `  (via ${m.instance})` : "";
    p.append(u, t, via);
    chatlog.append(p);
    chatlog.scrollTop = chatlog.scrollHeight;
  };

  const catchUp = async () => {
    const h = await api("GET", `/api/chat/messages?since=${last}`);
    for (const m of h.messages) show(m);
  };

  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const rt = new Realtime(`${scheme}://${location.host}/ws`);
  rt.on("state", (s) => { statusEl.textContent = s === "connected" ? "connected" : `connection: ${s}`; });
  rt.subscribe("chat:lobby", (data, meta) => {
    const m = typeof data === "string" ? JSON.parse(data) : data;
    show({ ...m, offset: meta.offset || m.offset });
  }, { presence: true, onReset: () => { chatlog.replaceChildren(); last = 0; catchUp(); } });
  rt.on("state", (s) => { if (s === "connected") catchUp().catch(() => {}); });
  rt.connect();
  catchUp().catch((e) => { statusEl.textContent = "history unavailable: " + e.message; });

  const refreshPresence = async () => {
    try {
      const here = await rt.presence("chat:lobby");
      const users = [...new Set(here.map((e) => e.user))].sort();
      presenceEl.textContent = users.join(", ") || "nobody";
    } catch { /* not connected yet */ }
  };
  setInterval(refreshPresence, 2000);

  const form = document.getElementById("chat-form");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = document.getElementById("chat-text");
    const text = input.value;
    try {
      const m = await api("POST", "/api/chat/messages", { text });
      input.value = "";
      show(m);
    } catch (e) {
      statusEl.textContent = "not sent: " + e.message;
    }
  });
}

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
    const rps = inst.rps !== undefined ? ` · ${inst.rps.toFixed(0)} req/s` : "";
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

async function followJob(id) {
  const card = jobCard(id);
  for (;;) {
    let st;
    try { st = await api("GET", `/api/files/${encodeURIComponent(id)}`); }
    catch (e) { card.querySelector(".state").textContent = `checking… (${e.message})`; await new Promise(r => setTimeout(r, 1000)); continue; }
    const worker = st.worker ? ` on ${st.worker}` : "";
    card.querySelector(".state").textContent = `${st.state} ${st.progress}%${worker}`;
    card.querySelector(".bar > div").style.width = `${st.progress}%`;
    if (st.result) card.querySelector(".result").textContent = JSON.stringify(st.result, null, 2);
    if (st.error) card.querySelector(".result").textContent = st.error;
    if (["done", "failed", "cancelled", "dead"].includes(st.state)) return;
    await new Promise(r => setTimeout(r, 500));
  }
}

if (uploadForm) {
  uploadForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const fd = new FormData(uploadForm);
    try {
      const res = await fetch("/api/files", { method: "POST", body: fd });
      const data = await res.json();
      if (!res.ok) throw new Error(data.error || res.statusText);
      uploadForm.reset();
      followJob(data.id);
    } catch (e) {
      alert("Upload failed: " + e.message);
    }
  });
  for (const card of jobsEl.querySelectorAll("[data-job]")) followJob(card.dataset.job);
}

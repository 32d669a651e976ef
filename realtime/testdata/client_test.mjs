// Drives realtime.js against real hubs (see TestJSClient): argv are the
// URLs of hub A and hub B. Prints "ready" once subscribed and "done" when
// every expectation held; exits non-zero with a reason otherwise.
import { Realtime } from "../realtime.js";

const [urlA, urlB] = process.argv.slice(2);
let dials = 0;
const fail = (msg) => { console.log("FAIL " + msg); process.exit(1); };
setTimeout(() => fail("timeout"), 30000);

const rt = new Realtime(() => (dials++ === 0 ? urlA : urlB), { minDelay: 50, maxDelay: 500 });
const seen = [];
let states = [];
let gotUser = false;
rt.on("state", (s) => states.push(s));
rt.on("reset", (ch) => fail("unexpected reset of " + ch));
rt.on("user", (data) => { if (data.hello === 1) { gotUser = true; check(); } });

function check() {
  const ns = seen.map((m) => m.n).join(",");
  if (ns === "0,1,2" && gotUser) {
    if (states.filter((s) => s === "connected").length < 2) fail("did not reconnect: " + states);
    console.log("done");
    rt.close();
    process.exit(0);
  }
}

rt.subscribe("js", (data, meta) => {
  if (meta.local || !meta.offset) fail("message without offset");
  seen.push(data);
  if (data.n === 0) afterFirst();
  check();
}, { presence: true });

const offReady = rt.on("state", async (s) => {
  if (s !== "connected") return;
  offReady();
  // Let the subscribe round trip finish before publishing.
  setTimeout(async () => {
    try {
      const r = await rt.publish("js", { n: 0 });
      if (!r.offset) fail("publish without offset");
    } catch (e) { fail("publish: " + e.message); }
  }, 100);
});

async function afterFirst() {
  const here = await rt.presence("js");
  if (!here.some((e) => e.user === "jsuser")) fail("not in presence: " + JSON.stringify(here));
  console.log("ready");
}

rt.connect();

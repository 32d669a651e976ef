// Package realtime serves WebSockets that work across instances without
// sticky sessions.
//
// A socket lives on one instance while it is open; nothing else needs to.
// Every instance mounts a Hub. Messages travel between instances over a
// Broker (redisbroker or natsbroker; brokertest checks any other against
// the guarantees documented on Broker), which also keeps each channel's
// recent history with an offset per message and an epoch per channel. A
// client that reconnects, to any instance, sends its last offset and epoch
// and gets what it missed, or an explicit recovered:false when history no
// longer covers the gap, so the app knows to reload instead of silently
// showing stale state.
//
// # Mounting
//
//	broker, _ := redisbroker.New(ctx, redisbroker.Options{URL: "redis://127.0.0.1:6379"})
//	hub, _ := realtime.New(realtime.Config{
//		Broker:       broker,
//		Authenticate: tokens.Authenticate, // or the app's session lookup
//	})
//	mux.Handle("/realtime/", hub) // /realtime/ws, /realtime/realtime.js, /realtime/healthz
//	...
//	hub.PublishToUser(ctx, "alice", []byte(`{"cart":3}`))
//	hub.Shutdown(ctx) // on SIGTERM: drain over Config.DrainWindow
//
// The browser side is the embedded ES module served at .../realtime.js:
//
//	import { Realtime } from "/realtime/realtime.js";
//	const rt = new Realtime(() => fetch("/token").then(r => r.text()).then(t => `wss://${location.host}/realtime/ws?token=${t}`));
//	rt.subscribe("chat:42", (msg) => show(msg), { presence: true, onReset: reloadChat });
//	rt.on("user", (msg) => notify(msg));
//	rt.connect();
//
// # Protocol
//
// One JSON object per WebSocket text message. Clients send commands; an
// "id" (a positive integer) is echoed by the reply.
//
//	{"type":"subscribe","id":1,"channel":"chat:42"}
//	{"type":"subscribe","id":2,"channel":"chat:42","recover":true,"offset":17,"epoch":"Xy9","presence":true}
//	{"type":"unsubscribe","id":3,"channel":"chat:42"}
//	{"type":"publish","id":4,"channel":"chat:42","data":{"text":"hi"}}
//	{"type":"presence","id":5,"channel":"chat:42"}
//	{"type":"ping","id":6}
//
// The hub sends:
//
//	{"type":"connected","client":"c1","user":"alice","ping_ms":25000}
//	{"type":"message","channel":"chat:42","offset":18,"epoch":"Xy9","data":{"text":"hi"}}
//	{"type":"subscribed","id":2,"channel":"chat:42","offset":18,"epoch":"Xy9","recovered":true}
//	{"type":"unsubscribed","id":3,"channel":"chat:42"}
//	{"type":"published","id":4,"channel":"chat:42","offset":19,"epoch":"Xy9"}
//	{"type":"presence","id":5,"channel":"chat:42","clients":[{"client":"c1","user":"alice"}]}
//	{"type":"pong","id":6}
//	{"type":"error","id":4,"code":"forbidden","message":"..."}
//	{"type":"disconnect","code":1012,"message":"server restart","reconnect":true,"retry_ms":1000}
//
// Rules a client relies on:
//
//   - A subscribe with recover:true replays, as message frames, everything
//     after offset in epoch, then answers subscribed with recovered:true.
//     If the epoch differs, or history was trimmed (HistorySize,
//     HistoryTTL) or the gap exceeds Config.HistoryLimit, nothing is
//     replayed and recovered is false: reload the channel's state. Either
//     way the reply's offset and epoch are the new position.
//   - Messages of a channel arrive in offset order, each at most once; the
//     client keeps the last offset and epoch it saw. Offsets grow but need
//     not be contiguous (NATS offsets are stream sequences).
//   - A subscribed frame without an id is the hub saying it lost messages
//     it could not replay (a backplane that came back empty, a gap longer
//     than history): recovered is false; reload.
//   - A message without offset was delivered during a backplane outage to
//     this instance's subscribers only and is not in history.
//   - Errors have stable codes: bad_request, forbidden, rate_limited,
//     unavailable (backplane down; retry), not_subscribed, internal. A
//     publish answered unavailable with "local":true reached this
//     instance's subscribers only; without it, it reached nobody, or (the
//     backplane's answer was lost) everybody, from history: retrying it
//     may deliver it twice.
//   - "$user:<id>" is the channel of one user's connections on every
//     instance; only that user may subscribe, and only the server
//     publishes to it (Hub.PublishToUser) unless Config.Authorize allows.
//   - Close codes: 1012 (drain; reconnect after a random delay within
//     retry_ms), 1009 (frame over Limits.MessageSize), 4008 (slow consumer:
//     send queue overflowed), 4029 (rate limit). On any close but 1000 the
//     client reconnects with full-jitter exponential backoff.
//
// # Guarantees and limits
//
// See Broker for what backplanes guarantee. On top, the hub detects loss
// in the live stream (each message names its predecessor's offset) and
// fills it from history; after a backplane reconnect it resyncs every
// channel; a periodic check (Config.PositionCheck) catches a lost final
// message. Presence is eventually consistent: entries are refreshed by
// heartbeats and those of a dead instance lapse within Config.PresenceTTL.
// Every connection has a bounded send queue, a command rate limit and a
// frame size limit; none of them can slow another connection.
package realtime

// Package workload is the experiment's simulated users: each one a browser
// with its own cookie jar that logs in, browses, fills a cart, uploads a
// file and follows it to the end, chats over the WebSocket, or adds to its
// cart from two tabs at once, against the shop behind the balancer.
//
// Load is offered open-loop: users arrive on a schedule fixed in advance
// (Poisson arrivals), and each of a user's actions has a scheduled time.
// A slow system never slows the schedule down; an action that starts late
// is measured from its scheduled time, so the wait counts as latency and
// coordinated omission cannot hide it.
//
// Every user keeps a ledger of what the server must hold for it (logged in
// or not, each cart line, its uploads, the chat messages everyone sent while
// it was in the room) and checks every response against it. A mismatch is
// reported to the Recorder as a loss of a named kind, at the moment it is
// seen, so each loss lands in the phase where it happened.
package workload

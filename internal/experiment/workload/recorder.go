package workload

import "time"

// Recorder receives what the users observe. It must be safe for concurrent
// use and cheap: every request calls it.
type Recorder interface {
	// Request reports one HTTP exchange, answered or failed.
	Request(r Request)
	// Loss reports n losses of one kind, seen (or, for chat messages,
	// published) at the given time.
	Loss(kind Loss, n int, at time.Time)
}

// Request is one HTTP exchange as a user saw it.
type Request struct {
	// Op names the script step: "login", "browse", "cart_add", ...
	Op string
	// Scheduled is when the user meant to send it; latency is measured
	// from here (open loop). Sent is when it actually left.
	Scheduled, Sent, Done time.Time
	// Instance is the X-Unstuck-Instance that answered, "" if none did.
	Instance string
	// Status is the HTTP status, 0 when there was no response.
	Status int
	// Err classifies a request without a response: "timeout", "refused",
	// "reset", "eof" or "error".
	Err string
	// Stream marks the opening of a long-lived stream (Server-Sent Events,
	// WebSocket): counted as a request, but its duration is not a latency.
	Stream bool
}

// Failed reports whether the exchange is an error in the experiment's
// sense: no response at all, or a 5xx.
func (r Request) Failed() bool { return r.Status == 0 || r.Status >= 500 }

// Loss is a kind of state a user lost.
type Loss int

// The kinds of loss a ledger detects.
const (
	// SessionLost: a logged-in user was logged out by the system and had
	// to log in again.
	SessionLost Loss = iota
	// CartItemsLost: items the server acknowledged that are no longer in
	// the cart (with the session, or alone).
	CartItemsLost
	// UpdatesLost: of two concurrent adds both acknowledged, the cart
	// kept only one (the last writer won).
	UpdatesLost
	// UploadsLost: an accepted upload the user could not follow to its
	// result (the job vanished, failed for good, or the user's session
	// no longer knew it).
	UploadsLost
	// MessagesLost: a chat message acknowledged while the user was in
	// the room that the user never received, live or from history.
	MessagesLost
	// MessagesDuplicated: a chat message delivered twice on the
	// WebSocket (typically replayed after a reconnect).
	MessagesDuplicated
	// CartItemsExtra: items in the cart that the user never added (a
	// write applied twice, or a removed session coming back).
	CartItemsExtra
	// StaleReads: a cart read missed an acknowledged item that the very
	// next read showed again (a cache behind its store).
	StaleReads
	// UploadsUnfinished: accepted uploads still running when the run
	// ended; not counted as lost.
	UploadsUnfinished
	numLosses
)

// NumLosses is the number of Loss kinds, for arrays indexed by Loss.
const NumLosses = int(numLosses)

var lossNames = [...]string{
	SessionLost:        "sessions_lost",
	CartItemsLost:      "cart_items_lost",
	UpdatesLost:        "updates_lost",
	UploadsLost:        "uploads_lost",
	MessagesLost:       "messages_lost",
	MessagesDuplicated: "messages_duplicated",
	CartItemsExtra:     "cart_items_extra",
	StaleReads:         "stale_reads",
	UploadsUnfinished:  "uploads_unfinished",
}

// String is the loss's snake_case key in results.json.
func (l Loss) String() string {
	if l < 0 || int(l) >= len(lossNames) {
		return "unknown"
	}
	return lossNames[l]
}

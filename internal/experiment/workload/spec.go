package workload

import "time"

// Spec is one simulated user, drawn in advance from the workload model so
// that a run is reproducible from its seed.
type Spec struct {
	// ID numbers the user; its login name is "u<ID>".
	ID int
	// Arrival is when the user arrives, from the start of the run.
	Arrival time.Duration
	// Length is how long the user stays.
	Length time.Duration
	// Rate is the user's actions per second while it stays; its actions
	// come at exponential intervals (a Poisson process).
	Rate float64
	// Uploads: the user uploads one file and follows it to the end.
	Uploads bool
	// Chats: the user holds the chat WebSocket and posts messages.
	Chats bool
	// TwoTabs: the user's cart adds come from two tabs at once.
	TwoTabs bool
	// Seed seeds the user's own choices.
	Seed uint64
}

// Mix is the script: the relative weights of a user's actions after its
// login. Chat posts apply to users who chat only; the rest is renormalised
// for the others.
type Mix struct {
	Browse, CartAdd, CartView, ChatPost float64
}

// DefaultMix browses most, adds to the cart often and looks at it less.
var DefaultMix = Mix{Browse: 0.45, CartAdd: 0.3, CartView: 0.15, ChatPost: 0.1}

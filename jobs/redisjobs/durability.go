package redisjobs

import (
	"time"

	"github.com/unstuck-dev/unstuck/internal/replicawait"
)

// Durability makes writes wait (Redis WAIT) until Replicas replicas hold
// them; a write they do not confirm within Timeout fails with
// ErrNotReplicated. The zero value waits for none.
type Durability struct {
	// Replicas that must confirm each write; 0 turns waiting off.
	Replicas int
	// Timeout bounds the wait. Default 1s.
	Timeout time.Duration
}

// ErrNotReplicated is the error of a write that fewer replicas than
// Durability.Replicas confirmed within Durability.Timeout.
var ErrNotReplicated = replicawait.ErrNotReplicated

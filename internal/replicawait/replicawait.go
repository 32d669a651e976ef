// Package replicawait makes a Redis write count as acknowledged only once
// replicas hold it. Redis replicates asynchronously: a primary that dies
// right after answering takes the write with it, and the replica promoted
// in its place never saw it. WAIT, sent on the same connection right after
// the write, blocks until that many replicas confirm the connection's
// writes so far (or a timeout passes), closing the window at the cost of a
// replica round trip per write.
//
// On a Cluster the WAIT goes to the node that took the write (rueidis
// sends a keyless command of a DoMulti to the slot of the others), and a
// blocking command makes rueidis send the whole DoMulti on one dedicated
// connection, so WAIT counts the write it follows.
//
// A gap remains on a Cluster: when the write is redirected (MOVED or ASK,
// as during a slot migration or a manual failover) rueidis re-sends it
// alone to the new node, while its WAIT was answered by the old one, so
// that write is acknowledged without having been waited for. A crashed
// master is not such a case (its connection fails and the pair fails
// with it); moving slots while durability matters is.
package replicawait

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/rueidis"
)

// Policy says how many replicas must confirm a write. The zero value waits
// for none: a write is acknowledged when the primary has it.
type Policy struct {
	// Replicas is how many replicas must hold a write before it is
	// acknowledged; 0 turns waiting off.
	Replicas int
	// Timeout bounds the wait (WAIT's own timeout); a write that fewer
	// replicas confirmed in time fails with ErrNotReplicated. Default 1s.
	Timeout time.Duration
}

// On reports whether the policy waits for replicas.
func (p Policy) On() bool { return p.Replicas > 0 }

// ErrNotReplicated reports a write that the primary applied but not
// enough replicas confirmed within the timeout: it may be lost in a
// failover, so it is not acknowledged. Callers treat it as the store being
// unavailable (503), not as a success.
var ErrNotReplicated = errors.New("write not confirmed by enough replicas")

// Script is a Lua script that can be run with or without waiting.
type Script struct {
	// Lua runs the script without waiting (EVALSHA, EVAL on NOSCRIPT).
	Lua *rueidis.Lua
	src string
	sha string
}

// NewScript wraps a Lua script's source.
func NewScript(src string) *Script {
	sum := sha1.Sum([]byte(src))
	return &Script{Lua: rueidis.NewLuaScript(src), src: src, sha: hex.EncodeToString(sum[:])}
}

// Exec runs the script and, when p is on, WAIT right behind it on the same
// connection. It returns the script's result, or an error when the script
// failed or too few replicas confirmed it.
func (p Policy) Exec(ctx context.Context, c rueidis.Client, s *Script, keys, args []string) (rueidis.RedisResult, error) {
	if !p.On() {
		res := s.Lua.Exec(ctx, c, keys, args)
		return res, res.Error()
	}
	wait := c.B().Wait().Numreplicas(int64(p.Replicas)).Timeout(p.waitMillis()).Build()
	res := c.DoMulti(ctx, c.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build(), wait)
	if re, ok := rueidis.IsRedisErr(res[0].Error()); ok && re.IsNoScript() {
		// A restarted or newly promoted server may not know the script.
		wait = c.B().Wait().Numreplicas(int64(p.Replicas)).Timeout(p.waitMillis()).Build()
		res = c.DoMulti(ctx, c.B().Eval().Script(s.src).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build(), wait)
	}
	if err := res[0].Error(); err != nil {
		return res[0], err
	}
	return res[0], p.check(res[1])
}

// Do sends cmd and, when p is on, WAIT right behind it, like Exec.
func (p Policy) Do(ctx context.Context, c rueidis.Client, cmd rueidis.Completed) (rueidis.RedisResult, error) {
	if !p.On() {
		res := c.Do(ctx, cmd)
		return res, res.Error()
	}
	res := c.DoMulti(ctx, cmd, c.B().Wait().Numreplicas(int64(p.Replicas)).Timeout(p.waitMillis()).Build())
	if err := res[0].Error(); err != nil {
		return res[0], err
	}
	return res[0], p.check(res[1])
}

func (p Policy) check(wait rueidis.RedisResult) error {
	n, err := wait.AsInt64()
	if err != nil {
		return fmt.Errorf("WAIT: %w", err)
	}
	if n < int64(p.Replicas) {
		return fmt.Errorf("%w: %d of %d within %v", ErrNotReplicated, n, p.Replicas, p.timeout())
	}
	return nil
}

func (p Policy) timeout() time.Duration {
	if p.Timeout <= 0 {
		return time.Second
	}
	return p.Timeout
}

// waitMillis is the timeout in WAIT's unit, never 0 (which waits forever).
func (p Policy) waitMillis() int64 { return max(p.timeout().Milliseconds(), 1) }

// Package redisstore is a session.Store on Redis or Redis Cluster, through
// rueidis.
//
// Each session is one hash, {prefix}{<id>}: the values under fields "."+key,
// metadata under "_"-fields. Every write is one Lua script (one round trip)
// that checks the session's state, applies only the changed fields and sets
// the key's expiry in the same atomic step, so no key is ever left without
// a TTL and a write after Delete finds the tombstone and changes nothing.
// The id is the key's hash tag, so everything about one session lives in
// one slot of a cluster, and rotating a token never needs RENAME.
//
// Each user has a set, {prefix}u:{<user>}, of the sessions bound to them;
// nothing on any path uses KEYS or SCAN.
//
// With NearCache, loads go through Redis server-assisted client-side caching
// (RESP3 CLIENT TRACKING): a session read again on the same instance costs
// no round trip until Redis reports a change to it, and an entry lives at
// most NearCacheTTL and never past the key's own TTL.
//
// # Reconnects
//
// A call whose connection died under it (a restarted server, a pooled
// connection that was already dead) is sent again on a fresh connection,
// within the caller's deadline, because every call is safe to repeat:
// loads and UserSessions read; each Commit carries an id chosen before the
// call, which its script stores in the session ("_o"), so a repeat after a
// lost reply finds its own write and answers with its version instead of
// applying the change again (unless another commit to the same session
// landed in the milliseconds between, when the change is applied on top
// of it, as a commit sent then would be); Delete moves the old hash aside
// under its own id for a minute, so a repeat returns the record it
// deleted rather than none; the user index write is a set add.
package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/replicawait"
	"github.com/unstuck-dev/unstuck/internal/retry"
	"github.com/unstuck-dev/unstuck/internal/storeurl/connect"
	"github.com/unstuck-dev/unstuck/session"
)

// Options configures a Store: give URL or Client, not both. Every other
// field's zero value is a sensible default.
type Options struct {
	// URL names the Redis server or Cluster:
	// redis://[:PASSWORD@]HOST:PORT[/DB], rediss:// for TLS,
	// ?addr=HOST:PORT for more cluster seeds. The Store opens its own
	// client, and Close closes it.
	URL string
	// Client is a ready rueidis client (Redis or Cluster) that the caller
	// keeps owning: Close leaves it open. For the near cache it must have
	// client-side caching enabled (rueidis enables it unless DisableCache
	// is set).
	Client rueidis.Client

	// Prefix starts every key. Default "unstuck:session:".
	Prefix string

	// NearCache keeps recently loaded sessions in this process, kept
	// fresh by Redis invalidation messages.
	NearCache bool
	// NearCacheTTL bounds how long an entry may be served without asking
	// Redis. Default 1m.
	NearCacheTTL time.Duration
	// NearCacheSize bounds the cache per connection, in bytes, of the
	// client opened from URL (a Client brings its own). Default 32 MiB.
	NearCacheSize int

	// UserIndexTTL is how long a user's index lives after the last
	// session was bound, when the binding carries no deadline. Default
	// 31 days.
	UserIndexTTL time.Duration

	// Durability makes every write wait for replicas before it is
	// acknowledged. Off by default: Redis replicates asynchronously, so
	// a write acknowledged just before the primary dies can be lost in
	// the failover.
	Durability Durability
}

// ErrNotReplicated is the error of a write that fewer replicas than
// Durability.Replicas confirmed within Durability.Timeout.
var ErrNotReplicated = replicawait.ErrNotReplicated

// Durability makes writes wait (Redis WAIT) until Replicas replicas hold
// them. A write they do not confirm within Timeout fails (the session
// middleware answers 503) instead of being acknowledged; the primary may
// still have applied it. The zero value waits for none.
type Durability struct {
	// Replicas that must confirm each write; 0 turns waiting off.
	Replicas int
	// Timeout bounds the wait. Default 1s.
	Timeout time.Duration
}

// Store is a session.Store on Redis.
type Store struct {
	c      rueidis.Client
	own    bool
	prefix string
	near   bool
	ttl    time.Duration
	idxTTL time.Duration
	floors floors
	wait   replicawait.Policy
}

var (
	_ session.Store       = (*Store)(nil)
	_ session.FreshLoader = (*Store)(nil)
)

// New returns a Store on o.Client, or on a client of its own connected to
// o.URL (checked within ctx, so a wrong address fails now).
func New(ctx context.Context, o Options) (*Store, error) {
	if err := connect.Either(o.URL, o.Client != nil); err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	s := &Store{c: o.Client, prefix: o.Prefix, near: o.NearCache, ttl: o.NearCacheTTL, idxTTL: o.UserIndexTTL,
		wait: replicawait.Policy{Replicas: o.Durability.Replicas, Timeout: o.Durability.Timeout}}
	if s.prefix == "" {
		s.prefix = "unstuck:session:"
	}
	if s.ttl <= 0 {
		s.ttl = time.Minute
	}
	if s.idxTTL <= 0 {
		s.idxTTL = 31 * 24 * time.Hour
	}
	if o.URL != "" {
		c, err := connect.Redis(ctx, o.URL, connect.RedisOptions{NearCache: o.NearCache, CacheSize: o.NearCacheSize})
		if err != nil {
			return nil, fmt.Errorf("redisstore: %w", err)
		}
		s.c, s.own = c, true
	}
	return s, nil
}

// Close closes the client the Store opened from Options.URL; a client
// given as Options.Client stays open.
func (s *Store) Close() error {
	if s.own {
		s.c.Close()
	}
	return nil
}

// Key is the hash that holds session id.
func (s *Store) Key(id string) string { return s.prefix + "{" + id + "}" }

func (s *Store) userKey(user string) string { return s.prefix + "u:{" + user + "}" }

const (
	fVersion  = "_v"
	fUser     = "_u"
	fCreated  = "_c"
	fDeadline = "_d"
	fIdle     = "_i"
	fTomb     = "_x"
	valPrefix = "."
)

// Load implements session.Store. With the near cache, a session this
// Store wrote itself is never served older than that write, even before
// Redis's invalidation message has arrived.
func (s *Store) Load(ctx context.Context, id string) (*session.Record, error) {
	if !s.near {
		return s.loadDirect(ctx, id)
	}
	m, err := retry.Value(ctx, func(ctx context.Context) (map[string]string, error) {
		return s.c.DoCache(ctx, s.c.B().Hgetall().Key(s.Key(id)).Cache(), s.ttl).AsStrMap()
	})
	if err != nil {
		return nil, err
	}
	r, err := parseHash(m)
	if err != nil {
		return nil, err
	}
	if s.floors.stale(id, r) {
		return s.loadDirect(ctx, id)
	}
	return r, nil
}

// Cached implements session.FreshLoader: true with the near cache.
func (s *Store) Cached() bool { return s.near }

// LoadAtLeast implements session.FreshLoader: it costs a round trip only
// when the cached copy is older than minVersion.
func (s *Store) LoadAtLeast(ctx context.Context, id string, minVersion uint64) (*session.Record, error) {
	r, err := s.Load(ctx, id)
	if err != nil || !s.near || (r != nil && r.Version >= minVersion) {
		return r, err
	}
	return s.loadDirect(ctx, id)
}

func (s *Store) loadDirect(ctx context.Context, id string) (*session.Record, error) {
	m, err := retry.Value(ctx, func(ctx context.Context) (map[string]string, error) {
		return s.c.Do(ctx, s.c.B().Hgetall().Key(s.Key(id)).Build()).AsStrMap()
	})
	if err != nil {
		return nil, err
	}
	return parseHash(m)
}

// parseHash turns a session hash into a Record; nil for none or a
// tombstone.
func parseHash(m map[string]string) (*session.Record, error) {
	if len(m) == 0 {
		return nil, nil
	}
	if _, tomb := m[fTomb]; tomb {
		return nil, nil
	}
	r := &session.Record{Values: make(map[string][]byte, len(m))}
	for f, v := range m {
		if k, ok := strings.CutPrefix(f, valPrefix); ok {
			r.Values[k] = []byte(v)
		}
	}
	ver, _ := strconv.ParseUint(m[fVersion], 10, 64)
	r.Version = ver
	r.UserID = m[fUser]
	r.Created = msTime(m[fCreated])
	r.Deadline = msTime(m[fDeadline])
	r.IdleDeadline = msTime(m[fIdle])
	if r.Deadline.IsZero() {
		return nil, errors.New("redisstore: session hash without deadline")
	}
	return r, nil
}

func msTime(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func ms(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func sha(script string) string {
	sum := sha1.Sum([]byte(script))
	return hex.EncodeToString(sum[:])
}

var (
	commitSHA = sha(commitLua)
	indexSHA  = sha(indexLua)
)

// commitScript applies a session.Change. Replies: the version, -1 for
// ErrConflict, -2 for ErrGone (tombstone), -3 for ErrNotFound.
var commitScript = replicawait.NewScript(commitLua)

const commitLua = `
local k = KEYS[1]
local flags = ARGV[1]
-- A repeat after a lost reply: if this commit (id ARGV[9]) already
-- landed, answer as it would have.
if string.find(flags, 'r', 1, true) and redis.call('HGET', k, '_o') == ARGV[9] then
  return tonumber(redis.call('HGET', k, '_v') or '0')
end
local create = string.find(flags, 'c', 1, true)
local clear = string.find(flags, 'x', 1, true)
local setuser = string.find(flags, 'u', 1, true)
-- A live hash always has _d; a tombstone has only _x.
local st = redis.call('HMGET', k, '_x', '_d', '_i', '_v')
if create then
  if st[1] or st[2] then return -1 end
elseif not st[1] and not st[2] then
  return -3
elseif st[1] then
  return -2
end
local ne, ns, nd = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local i = 10
for _ = 1, ne do
  local cur = redis.call('HGET', k, ARGV[i])
  if ARGV[i+1] == '0' then
    if cur then return -1 end
  elseif cur ~= ARGV[i+2] then
    return -1
  end
  i = i + 3
end
if clear then
  for _, f in ipairs(redis.call('HKEYS', k)) do
    if string.sub(f, 1, 1) == '.' then redis.call('HDEL', k, f) end
  end
end
-- One HSET for the values and the metadata.
local h = {'_o', ARGV[9]}
for _ = 1, ns do
  h[#h+1] = ARGV[i]; h[#h+1] = ARGV[i+1]
  i = i + 2
end
local v = tonumber(st[4] or '0')
if create or clear or setuser or ns > 0 or nd > 0 then
  v = v + 1
  h[#h+1] = '_v'; h[#h+1] = v
end
local d, idle = tonumber(st[2] or '0'), tonumber(st[3] or '0')
if create then
  d = tonumber(ARGV[4])
  h[#h+1] = '_c'; h[#h+1] = ARGV[3]; h[#h+1] = '_d'; h[#h+1] = ARGV[4]
end
if setuser then h[#h+1] = '_u'; h[#h+1] = ARGV[2] end
if ARGV[5] ~= '0' then
  idle = tonumber(ARGV[5])
  h[#h+1] = '_i'; h[#h+1] = ARGV[5]
end
for j = 1, #h, 1000 do
  redis.call('HSET', k, unpack(h, j, math.min(j + 999, #h)))
end
for j = i, i + nd - 1, 1000 do
  redis.call('HDEL', k, unpack(ARGV, j, math.min(j + 999, i + nd - 1)))
end
local exp = d
if idle > 0 and idle < exp then exp = idle end
redis.call('PEXPIREAT', k, exp)
return v
`

// deleteScript replaces a live session with a tombstone that expires when
// the session would have, and returns the session's fields. The old hash
// is kept aside for a minute under the call's id (KEYS[2]), for a repeat
// (ARGV[1] = "1") to return.
var deleteScript = replicawait.NewScript(`
local k = KEYS[1]
if ARGV[1] == '1' then
  local prev = redis.call('HGETALL', KEYS[2])
  if #prev > 0 then return prev end
end
local all = redis.call('HGETALL', k)
local exp, idle = 0, 0
for j = 1, #all, 2 do
  local f = all[j]
  if f == '_x' then return {} end
  if f == '_d' then exp = tonumber(all[j+1]) elseif f == '_i' then idle = tonumber(all[j+1]) end
end
if #all == 0 then return {} end
if idle > 0 and idle < exp then exp = idle end
redis.call('RENAME', k, KEYS[2])
redis.call('PEXPIRE', KEYS[2], 60000)
redis.call('HSET', k, '_x', '1')
redis.call('PEXPIREAT', k, exp)
return all
`)

// indexScript adds a session to a user's set and makes the set live at
// least until deadline.
var indexScript = replicawait.NewScript(indexLua)

const indexLua = `
redis.call('SADD', KEYS[1], ARGV[1])
local cur = redis.call('PEXPIRETIME', KEYS[1])
if cur < tonumber(ARGV[2]) then redis.call('PEXPIREAT', KEYS[1], ARGV[2]) end
return 1
`

// Commit implements session.Store: one round trip, two for a SetUser on
// an existing session (the user index is written first).
func (s *Store) Commit(ctx context.Context, id string, c session.Change) (uint64, error) {
	if c.Create && c.Deadline.IsZero() {
		return 0, errors.New("redisstore: creating a session needs a Deadline")
	}
	op := newOp()
	var v uint64
	err := retry.Repeat(ctx, func(ctx context.Context, repeat bool) (err error) {
		v, err = s.commit(ctx, id, c, commitArgs(c, op, repeat))
		return err
	})
	return v, err
}

// newOp is a call's id, chosen before it is sent, by which a repeat
// recognises the call's earlier application.
func newOp() string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Store) commit(ctx context.Context, id string, c session.Change, args []string) (uint64, error) {
	if c.Create && c.SetUser && c.UserID != "" && !s.wait.On() {
		// A login: index and create pipelined in one round trip (on a
		// cluster, sent to both nodes at once). Should the index fail
		// while the create succeeds, Commit fails and the new token
		// never reaches a client, so no reachable session is missing
		// from the index.
		res := s.c.DoMulti(ctx,
			s.c.B().Evalsha().Sha1(indexSHA).Numkeys(1).Key(s.userKey(c.UserID)).Arg(id, ms(c.Deadline)).Build(),
			s.c.B().Evalsha().Sha1(commitSHA).Numkeys(1).Key(s.Key(id)).Arg(args...).Build())
		idxErr, comErr := res[0].Error(), res[1].Error()
		if !noScript(comErr) {
			if noScript(idxErr) { // a restarted Redis forgot the script
				idxErr = indexScript.Lua.Exec(ctx, s.c, []string{s.userKey(c.UserID)}, []string{id, ms(c.Deadline)}).Error()
			}
			if idxErr != nil {
				return 0, idxErr
			}
			return s.commitResult(id, res[1])
		}
		// The create did not run (script unknown): the slow path below
		// loads the scripts.
	}
	// With Durability, the pipelined login above is off: on a Cluster
	// the index and the session live on different nodes, and each write
	// needs its WAIT on its own node.
	if c.SetUser && c.UserID != "" {
		// Index first: the index may name a session that is not (yet)
		// bound, never miss one that is.
		deadline := c.Deadline
		if deadline.IsZero() {
			deadline = time.Now().Add(s.idxTTL)
		}
		if _, err := s.wait.Exec(ctx, s.c, indexScript, []string{s.userKey(c.UserID)}, []string{id, ms(deadline)}); err != nil {
			return 0, err
		}
	}
	res, err := s.wait.Exec(ctx, s.c, commitScript, []string{s.Key(id)}, args)
	if err != nil {
		return 0, err
	}
	return s.commitResult(id, res)
}

func noScript(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	return ok && re.IsNoScript()
}

func commitArgs(c session.Change, op string, repeat bool) []string {
	flags := make([]byte, 0, 4)
	if repeat {
		flags = append(flags, 'r')
	}
	if c.Create {
		flags = append(flags, 'c')
	}
	if c.Clear {
		flags = append(flags, 'x')
	}
	if c.SetUser {
		flags = append(flags, 'u')
	}
	args := make([]string, 0, 9+3*len(c.Expect)+2*len(c.Set)+len(c.Delete))
	args = append(args, string(flags), c.UserID, ms(c.Created), ms(c.Deadline), ms(c.IdleDeadline),
		strconv.Itoa(len(c.Expect)), strconv.Itoa(len(c.Set)), strconv.Itoa(len(c.Delete)), op)
	for k, v := range c.Expect {
		if v == nil {
			args = append(args, valPrefix+k, "0", "")
		} else {
			args = append(args, valPrefix+k, "1", string(v))
		}
	}
	for k, v := range c.Set {
		args = append(args, valPrefix+k, string(v))
	}
	for _, k := range c.Delete {
		args = append(args, valPrefix+k)
	}
	return args
}

func (s *Store) commitResult(id string, res rueidis.RedisResult) (uint64, error) {
	v, err := res.AsInt64()
	if err != nil {
		return 0, err
	}
	switch v {
	case -1:
		return 0, session.ErrConflict
	case -2:
		return 0, session.ErrGone
	case -3:
		return 0, session.ErrNotFound
	}
	if s.near {
		s.floors.note(id, uint64(v), false, s.ttl)
	}
	return uint64(v), nil
}

// Delete implements session.Store.
func (s *Store) Delete(ctx context.Context, id string) (*session.Record, error) {
	keys := []string{s.Key(id), s.Key(id) + ":deleted:" + newOp()}
	var arr []string
	err := retry.Repeat(ctx, func(ctx context.Context, repeat bool) error {
		res, err := s.wait.Exec(ctx, s.c, deleteScript, keys, []string{flag(repeat)})
		if err != nil {
			return err
		}
		arr, err = res.AsStrSlice()
		return err
	})
	if err != nil {
		return nil, err
	}
	if s.near {
		s.floors.note(id, 0, true, s.ttl)
	}
	m := make(map[string]string, len(arr)/2)
	for i := 0; i+1 < len(arr); i += 2 {
		m[arr[i]] = arr[i+1]
	}
	return parseHash(m)
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// UserSessions implements session.Store, with one SMEMBERS and one
// pipelined HMGET per listed session. It drops deleted sessions from the
// user's set as it goes.
func (s *Store) UserSessions(ctx context.Context, userID string) ([]string, error) {
	ukey := s.userKey(userID)
	var ids []string
	var res []rueidis.RedisResult
	err := retry.Do(ctx, func(ctx context.Context) (err error) {
		ids, err = s.c.Do(ctx, s.c.B().Smembers().Key(ukey).Build()).AsStrSlice()
		if err != nil || len(ids) == 0 {
			return err
		}
		cmds := make(rueidis.Commands, len(ids))
		for i, id := range ids {
			cmds[i] = s.c.B().Hmget().Key(s.Key(id)).Field(fUser, fTomb).Build()
		}
		res = s.c.DoMulti(ctx, cmds...)
		for _, r := range res {
			if err := r.Error(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	var live, stale []string
	for i, res := range res {
		vals, err := res.ToArray()
		if err != nil {
			return nil, err
		}
		user, _ := vals[0].ToString()
		_, tombErr := vals[1].ToString()
		switch {
		case tombErr == nil:
			// Deleted for good (a tombstone never comes back to life).
			stale = append(stale, ids[i])
		case user == userID:
			live = append(live, ids[i])
		}
		// Missing or bound to someone else: maybe a binding still in
		// flight (the index is written first), so keep the entry; the
		// set's own TTL bounds what accumulates.
	}
	if len(stale) > 0 {
		// Best effort: a stale entry left behind is only filtered again.
		_ = s.c.Do(ctx, s.c.B().Srem().Key(ukey).Member(stale...).Build()).Error()
	}
	return live, nil
}

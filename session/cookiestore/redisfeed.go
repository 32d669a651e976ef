package cookiestore

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/retry"
)

// redisFeed carries revocations through Redis:
//
//   - {Name}:z, a sorted set of every live revocation scored by its until,
//     is the state a starting instance loads (pruned by every publish;
//     no KEYS, no SCAN);
//   - {Name}:log, a stream capped at about logLen entries, is the ordered
//     log an instance catches up from after a reconnect or a lost message;
//   - Name:feed, a Pub/Sub channel, brings each revocation to every
//     instance at once, with the log id of the entry before it so a
//     receiver notices a gap;
//   - {Name}:epoch, a random value set once, changes only if Redis lost
//     its data, which instances then report.
//
// One Lua script writes all three atomically. The keys share a hash tag,
// so the script runs in one slot of a Redis Cluster.
type redisFeed struct {
	c                rueidis.Client
	own              bool
	z, log, epochKey string
	channel          string
	onStop           func()
	logger           *slog.Logger

	mu     sync.Mutex
	cursor streamID // every log entry up to it is in the set
	known  bool     // cursor is meaningful (false until the first load)
	epoch  string   // the store's epoch at the last confirm
}

// logLen caps the log: an instance that falls further behind reloads the
// sorted set instead.
const logLen = 10000

func newRedisFeed(c rueidis.Client, own bool, o Options) *redisFeed {
	return &redisFeed{c: c, own: own, z: "{" + o.Name + "}:z", log: "{" + o.Name + "}:log", epochKey: "{" + o.Name + "}:epoch",
		channel: o.Name + ":feed", logger: o.Logger}
}

// A revocation's text, in the set, the log and the channel alike:
// "<name> <until> <notBefore>" (entry.name, entry.value).
func entryText(e entry) string { return e.name() + " " + e.value() }

func parseEntryText(s string) (entry, bool) {
	name, value, ok := strings.Cut(s, " ")
	if !ok {
		return entry{}, false
	}
	return parseEntry(name, value)
}

var redisPublish = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local prev = '0-0'
if #last > 0 then prev = last[1][1] end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'e', ARGV[1])
redis.call('PUBLISH', ARGV[4], prev .. ' ' .. id .. ' ' .. ARGV[1])
return id
`)

// publish is repeated after a lost connection: applying a revocation is
// idempotent, so a second log entry or message for it changes nothing.
func (f *redisFeed) publish(ctx context.Context, e entry) error {
	return retry.Do(ctx, func(ctx context.Context) error {
		return redisPublish.Exec(ctx, f.c, []string{f.z, f.log},
			[]string{entryText(e), strconv.FormatInt(e.until, 10), strconv.Itoa(logLen), f.channel}).Error()
	})
}

// start subscribes on a dedicated connection. Messages are applied as they
// come (applying is idempotent); the cursor moves only along an unbroken
// chain, and a break wakes the Store to confirm, which catches up from the
// log.
func (f *redisFeed) start(ctx context.Context, s *set) (<-chan error, error) {
	dc, release := f.c.Dedicate()
	lost := dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: func(m rueidis.PubSubMessage) {
		f.onMessage(s, m.Message)
	}})
	sctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := dc.Do(sctx, dc.B().Subscribe().Channel(f.channel).Build()).Error(); err != nil {
		dc.Close()
		release()
		return nil, err
	}
	f.onStop = func() { dc.Close(); release() }
	return lost, nil
}

func (f *redisFeed) onMessage(s *set, msg string) {
	prevS, rest, ok1 := strings.Cut(msg, " ")
	idS, text, ok2 := strings.Cut(rest, " ")
	e, ok3 := parseEntryText(text)
	prev, ok4 := parseStreamID(prevS)
	id, ok5 := parseStreamID(idS)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return // not ours
	}
	s.apply(e)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case !f.known || !id.after(f.cursor):
	case prev == f.cursor:
		f.cursor = id
	default:
		s.wakeUp() // a message went missing: catch up now, not at the next poll
	}
}

func (f *redisFeed) stop() {
	if f.onStop != nil {
		f.onStop()
		f.onStop = nil
	}
}

func (f *redisFeed) close() {
	if f.own {
		f.c.Close()
	}
}

// confirm reads the log's state; when the cursor is behind, it catches up
// from the log, or reloads the sorted set when the log no longer reaches
// back to the cursor (its oldest entry is newer: trimmed) or the store lost
// its data.
func (f *redisFeed) confirm(ctx context.Context, s *set) error {
	st, err := f.state(ctx)
	if err != nil {
		return err
	}
	f.mu.Lock()
	cur, known, epoch := f.cursor, f.known, f.epoch
	f.epoch = st.epoch
	f.mu.Unlock()
	switch {
	case known && st.epoch != epoch:
		// This instance keeps what it knew, but one started now would
		// not know it: say so loudly.
		f.logger.Error("cookiestore: the Redis revocation log went back in time: Redis lost data (turn on AOF or replicas); revocations held in memory are kept", "log", f.log, "had", cur, "now", st.last)
	case known && st.last == cur:
		return nil
	case known && !st.first.after(cur):
		return f.follow(ctx, s, cur, st.last)
	}
	return f.reload(ctx, s, st.last)
}

// logState is what XINFO STREAM says about the log, and the store's epoch.
type logState struct {
	last, first streamID // last generated id, oldest entry's id
	exists      bool
	epoch       string // a random value the first confirm stores; another one means Redis lost data
}

// state reads the log's state and the epoch (creating it when missing) in
// one round trip. (XINFO's max-deleted-entry-id would be the natural gap
// check, but Redis 7.0 does not move it when MAXLEN trims.)
func (f *redisFeed) state(ctx context.Context) (logState, error) {
	var st logState
	fresh := newID(time.Now())
	// SET NX and a read: safe to repeat.
	var res []rueidis.RedisResult
	if err := retry.Do(ctx, func(ctx context.Context) error {
		res = f.c.DoMulti(ctx,
			f.c.B().Set().Key(f.epochKey).Value(fresh).Nx().Get().Build(),
			f.c.B().XinfoStream().Key(f.log).Build())
		for _, r := range res {
			if retry.Lost(r.Error()) {
				return r.Error()
			}
		}
		return nil
	}); err != nil {
		return st, err
	}
	old, err := res[0].ToString()
	switch {
	case rueidis.IsRedisNil(err):
		st.epoch = fresh
	case err != nil:
		return st, err
	default:
		st.epoch = old
	}
	m, err := res[1].AsMap()
	if err != nil {
		if re, ok := rueidis.IsRedisErr(err); ok && strings.Contains(re.Error(), "no such key") {
			return st, nil
		}
		return st, err
	}
	bad := fmt.Errorf("cookiestore: unexpected XINFO STREAM reply for %s (Redis 7 or later needed)", f.log)
	lastM, firstM := m["last-generated-id"], m["first-entry"]
	lastS, err := lastM.ToString()
	var ok bool
	if st.last, ok = parseStreamID(lastS); err != nil || !ok {
		return st, bad
	}
	st.exists, st.first = true, st.last
	if firstM.IsNil() {
		return st, nil // empty: nothing older than the head
	}
	fe, err := firstM.ToArray()
	if err != nil || len(fe) == 0 {
		return st, bad
	}
	firstS, err := fe[0].ToString()
	if st.first, ok = parseStreamID(firstS); err != nil || !ok {
		return st, bad
	}
	return st, nil
}

// follow applies the log's entries after cur up to head.
func (f *redisFeed) follow(ctx context.Context, s *set, cur, head streamID) error {
	for cur.before(head) {
		entries, err := retry.Value(ctx, func(ctx context.Context) ([]rueidis.XRangeEntry, error) {
			return f.c.Do(ctx, f.c.B().Xrange().Key(f.log).Start("("+cur.String()).End(head.String()).Count(1000).Build()).AsXRange()
		})
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			break // trimmed meanwhile; the next confirm reloads
		}
		for _, x := range entries {
			if e, ok := parseEntryText(x.FieldValues["e"]); ok {
				s.apply(e)
			}
			if id, ok := parseStreamID(x.ID); ok {
				cur = id
			}
		}
	}
	f.setCursor(head, false)
	return nil
}

// reload loads every live revocation from the sorted set. head was read
// before, so entries added meanwhile are in the set or after head in the
// log: none is missed.
func (f *redisFeed) reload(ctx context.Context, s *set, head streamID) error {
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	for off := int64(0); ; off += 1000 {
		members, err := retry.Value(ctx, func(ctx context.Context) ([]string, error) {
			return f.c.Do(ctx, f.c.B().Zrange().Key(f.z).Min("("+now).Max("+inf").Byscore().Limit(off, 1000).Build()).AsStrSlice()
		})
		if err != nil {
			return err
		}
		for _, m := range members {
			if e, ok := parseEntryText(m); ok {
				s.apply(e)
			}
		}
		if len(members) < 1000 {
			break
		}
	}
	f.setCursor(head, true)
	return nil
}

// setCursor moves the cursor forward, or anywhere when forced (a reload
// after the store went back in time).
func (f *redisFeed) setCursor(id streamID, force bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if force || !f.known || id.after(f.cursor) {
		f.cursor, f.known = id, true
	}
}

// streamID is a Redis stream id, "ms-seq".
type streamID struct{ ms, seq uint64 }

func parseStreamID(s string) (streamID, bool) {
	msS, seqS, ok := strings.Cut(s, "-")
	ms, err1 := strconv.ParseUint(msS, 10, 64)
	seq, err2 := strconv.ParseUint(seqS, 10, 64)
	return streamID{ms, seq}, ok && err1 == nil && err2 == nil
}

func (a streamID) String() string {
	return strconv.FormatUint(a.ms, 10) + "-" + strconv.FormatUint(a.seq, 10)
}

func (a streamID) after(b streamID) bool {
	return a.ms > b.ms || (a.ms == b.ms && a.seq > b.seq)
}

func (a streamID) before(b streamID) bool { return b.after(a) }

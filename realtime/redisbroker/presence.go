package redisbroker

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/retry"
	"github.com/unstuck-dev/unstuck/realtime"
)

// Presence is one hash per channel, {prefix}:{<channel>}:p, with a field
// per client holding "<user>|<expiry ms>". The script answers 1: a script
// that returns nothing answers nil, which rueidis reports as an error.
var redisSetPresence = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local exp = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i+1] .. '|' .. exp)
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`)

// Entries carry their expiry by the Redis clock, so instances with skewed
// clocks agree on what has lapsed.
var redisGetPresence = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local exp = tonumber(string.match(all[i+1], '|(%d+)$') or '0')
  if exp <= now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    table.insert(out, all[i])
    table.insert(out, all[i+1])
  end
end
return out
`)

// SetPresence implements realtime.PresenceStore.
func (b *Broker) SetPresence(ctx context.Context, channel string, entries []realtime.PresenceEntry, ttl time.Duration) error {
	if len(entries) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	args := make([]string, 0, 1+2*len(entries))
	args = append(args, strconv.FormatInt(ttl.Milliseconds(), 10))
	for _, e := range entries {
		args = append(args, e.Client, e.User)
	}
	return b.wrap("presence", retry.Do(ctx, func(ctx context.Context) error {
		return redisSetPresence.Exec(ctx, b.cfg.Client, []string{b.presenceKey(channel)}, args).Error()
	}))
}

// RemovePresence implements realtime.PresenceStore.
func (b *Broker) RemovePresence(ctx context.Context, channel string, clients []string) error {
	if len(clients) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	c := b.cfg.Client
	return b.wrap("presence", retry.Do(ctx, func(ctx context.Context) error {
		return c.Do(ctx, c.B().Hdel().Key(b.presenceKey(channel)).Field(clients...).Build()).Error()
	}))
}

// Presence implements realtime.PresenceStore.
func (b *Broker) Presence(ctx context.Context, channel string) ([]realtime.PresenceEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	kv, err := retry.Value(ctx, func(ctx context.Context) ([]string, error) {
		return redisGetPresence.Exec(ctx, b.cfg.Client, []string{b.presenceKey(channel)}, nil).AsStrSlice()
	})
	if err != nil && !rueidis.IsRedisNil(err) {
		return nil, b.wrap("presence", err)
	}
	out := make([]realtime.PresenceEntry, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		v := kv[i+1]
		cut := strings.LastIndexByte(v, '|')
		if cut < 0 {
			continue
		}
		ms, _ := strconv.ParseInt(v[cut+1:], 10, 64)
		user := v[:cut]
		out = append(out, realtime.PresenceEntry{Client: kv[i], User: user, Expires: ms})
	}
	return out, nil
}

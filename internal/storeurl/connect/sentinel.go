package connect

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// SentinelScheme names a Redis deployment by its Sentinels:
// redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[?db=N].
const SentinelScheme = "redis+sentinel"

// maxSentinels bounds the address list of a Sentinel URL.
const maxSentinels = 64

// ParseSentinelURL reads a redis+sentinel:// URL into rueidis options: the
// Sentinels as seed addresses and the master's name. The password (if any)
// is the data nodes'; ?sentinel_password= gives the Sentinels' own.
func ParseSentinelURL(raw string) (rueidis.ClientOption, error) {
	var opt rueidis.ClientOption
	rest, ok := strings.CutPrefix(raw, SentinelScheme+"://")
	if !ok {
		return opt, fmt.Errorf("want %s://HOST:PORT[,HOST:PORT...]/MASTER", SentinelScheme)
	}
	rest, query, _ := strings.Cut(rest, "?")
	authority, master, _ := strings.Cut(rest, "/")
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		user, err := url.Parse("redis://" + authority[:i+1] + "x")
		if err != nil || user.User == nil {
			return opt, errors.New("bad user information before @")
		}
		opt.Username = user.User.Username()
		opt.Password, _ = user.User.Password()
		authority = authority[i+1:]
	}
	if authority == "" {
		return opt, errors.New("no Sentinel address")
	}
	for _, a := range strings.Split(authority, ",") {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return opt, fmt.Errorf("sentinel address %q: want HOST:PORT", a)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
			return opt, fmt.Errorf("sentinel address %q: want HOST:PORT", a)
		}
		if len(opt.InitAddress) == maxSentinels {
			return opt, fmt.Errorf("more than %d Sentinel addresses", maxSentinels)
		}
		opt.InitAddress = append(opt.InitAddress, net.JoinHostPort(host, port))
	}
	if master == "" || strings.ContainsAny(master, "/ ") {
		return opt, errors.New("want the master's name as the path: /MASTER")
	}
	opt.Sentinel.MasterSet = master
	q, err := url.ParseQuery(query)
	if err != nil {
		return opt, fmt.Errorf("query: %w", err)
	}
	for k := range q {
		switch k {
		case "db", "sentinel_password":
		default:
			return opt, fmt.Errorf("unknown parameter %q (want db or sentinel_password)", k)
		}
	}
	if v := q.Get("db"); v != "" {
		if opt.SelectDB, err = strconv.Atoi(v); err != nil || opt.SelectDB < 0 {
			return opt, fmt.Errorf("db %q: want a database number", v)
		}
	}
	opt.Sentinel.Password = q.Get("sentinel_password")
	// Sentinel pushes +switch-master, but a missed message would pin the
	// client to a demoted primary; reconciling every few seconds bounds
	// that (rueidis's advice).
	opt.Sentinel.TopologyRefreshInterval = 2 * time.Second
	return opt, nil
}

// redactAuthority replaces the user information of every URL in raw (a
// single URL or a comma-separated list, as NATS takes) with ***.
func redactAuthority(raw string) string {
	var b strings.Builder
	for {
		i := strings.Index(raw, "://")
		if i < 0 {
			b.WriteString(raw)
			return b.String()
		}
		b.WriteString(raw[:i+3])
		raw = raw[i+3:]
		end := len(raw)
		if j := strings.Index(raw, "://"); j >= 0 {
			end = j
		}
		if j := strings.IndexAny(raw[:end], "/?#"); j >= 0 {
			end = j
		}
		if at := strings.LastIndex(raw[:end], "@"); at >= 0 {
			b.WriteString("***")
			raw = raw[at:]
		}
	}
}

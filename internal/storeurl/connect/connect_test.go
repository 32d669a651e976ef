package connect_test

import (
	"strings"
	"testing"

	"github.com/unstuck-dev/unstuck/internal/storeurl/connect"
)

func TestParseSentinelURL(t *testing.T) {
	opt, err := connect.ParseSentinelURL("redis+sentinel://:pw@a:26379,[::1]:26380/mymaster?db=3&sentinel_password=sp")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(opt.InitAddress, " "); got != "a:26379 [::1]:26380" {
		t.Errorf("addresses = %s", got)
	}
	if opt.Sentinel.MasterSet != "mymaster" || opt.Password != "pw" || opt.SelectDB != 3 || opt.Sentinel.Password != "sp" {
		t.Errorf("options = master %q password %q db %d sentinel password %q", opt.Sentinel.MasterSet, opt.Password, opt.SelectDB, opt.Sentinel.Password)
	}
}

func TestRedactHidesEveryPassword(t *testing.T) {
	for raw, want := range map[string]string{
		"redis://:pw1@h:1/0":                         "redis://***@h:1/0",
		"redis+sentinel://:pw1@a:1,b:2/m":            "redis+sentinel://***@a:1,b:2/m",
		"nats://u:pw1@a:1,nats://tok@b:2,nats://c:3": "nats://***@a:1,nats://***@b:2,nats://c:3",
		"nats://a:1":                           "nats://a:1",
		"dynamodb://t?endpoint=http://u:p@h:1": "dynamodb://t?endpoint=http://***@h:1",
		"memory":                               "memory",
	} {
		if got := connect.Redact(raw); got != want {
			t.Errorf("Redact(%q) = %q, want %q", raw, got, want)
		}
	}
}

// FuzzParseSentinelURL: any input gives options with a master and at
// least one address, or an error; never a panic.
func FuzzParseSentinelURL(f *testing.F) {
	for _, s := range []string{"redis+sentinel://a:1/m", "redis+sentinel://:p@a:1,b:2/m?db=1", "redis+sentinel://u:p@[::1]:1/m?sentinel_password=x",
		"redis+sentinel://a/m", "redis+sentinel://a:1", "redis+sentinel://@@a:1/m", "redis+sentinel://a:1,,b:2/m", "redis+sentinel://a:1/m?db=%zz", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		opt, err := connect.ParseSentinelURL(raw)
		if err != nil {
			return
		}
		if opt.Sentinel.MasterSet == "" || len(opt.InitAddress) == 0 {
			t.Fatalf("ParseSentinelURL(%q) = master %q, addresses %v", raw, opt.Sentinel.MasterSet, opt.InitAddress)
		}
	})
}

// FuzzRedact: a password in any URL of a list never survives Redact.
func FuzzRedact(f *testing.F) {
	f.Add("redis://", "hunter22", "h:1/0")
	f.Add("nats://", "tok3n99", "a:1,nats://u:tok3n99@b:2")
	f.Add("redis+sentinel://", "s3cr3tpw", "a:1,b:2/m")
	f.Fuzz(func(t *testing.T, scheme, password, rest string) {
		if len(password) < 6 || strings.ContainsAny(password, "@/?#:") || strings.Contains(password, "://") ||
			strings.Contains(scheme+rest, password) {
			return
		}
		raw := scheme + ":" + password + "@" + rest
		if !strings.HasSuffix(scheme, "://") || strings.ContainsAny(scheme[:len(scheme)-3], "/?#@:") {
			return
		}
		if got := connect.Redact(raw); strings.Contains(got, password) {
			t.Fatalf("Redact(%q) = %q: the password survives", raw, got)
		}
	})
}

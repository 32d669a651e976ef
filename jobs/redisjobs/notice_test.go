package redisjobs

import (
	"strconv"
	"testing"
)

func TestParseNotice(t *testing.T) {
	v, ok := parseNotice(`7:{"v":1}`)
	if !ok || v.Rev != 7 || string(v.Data) != `{"v":1}` {
		t.Fatalf("parseNotice = %+v, %v", v, ok)
	}
	for _, bad := range []string{"", ":", "0:x", "-1:x", "x:1", "99999999999999999999999:x", "12"} {
		if _, ok := parseNotice(bad); ok {
			t.Errorf("parseNotice(%q) accepted it", bad)
		}
	}
}

// FuzzParseNotice: anyone who can PUBLISH can send the watcher anything.
func FuzzParseNotice(f *testing.F) {
	for _, s := range []string{`1:{"v":1}`, "18446744073709551615:", "18446744073709551616:x", ":", "1:2:3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		v, ok := parseNotice(msg)
		if !ok {
			return
		}
		if v.Rev == 0 {
			t.Fatalf("accepted revision 0 from %q", msg)
		}
		if want := strconv.FormatUint(v.Rev, 10) + ":" + string(v.Data); len(want) > len(msg) {
			t.Fatalf("%q parsed to more than it held: %+v", msg, v)
		}
	})
}

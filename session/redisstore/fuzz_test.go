package redisstore

import (
	"strings"
	"testing"
)

// FuzzParseHash: a session hash may have been written by another program
// (or another version); parsing must reject it cleanly, never panic.
func FuzzParseHash(f *testing.F) {
	f.Add("_v\x001\x00_d\x0099999999999\x00_i\x001\x00.cart\x00[1]")
	f.Add("_x\x001")
	f.Add("_d\x00-5\x00.a\x00b")
	f.Add("_v\x00nope\x00_d\x00abc")
	f.Add(".\x00\x00_u\x00\xff")
	f.Fuzz(func(t *testing.T, flat string) {
		parts := strings.Split(flat, "\x00")
		m := map[string]string{}
		for i := 0; i+1 < len(parts); i += 2 {
			m[parts[i]] = parts[i+1]
		}
		r, err := parseHash(m)
		if err != nil {
			if r != nil {
				t.Fatal("record returned with an error")
			}
			return
		}
		if r == nil {
			return
		}
		if r.Deadline.IsZero() {
			t.Fatalf("accepted a record without deadline: %+v", r)
		}
		for k := range r.Values {
			if _, ok := m[valPrefix+k]; !ok {
				t.Fatalf("value %q not from a %q field", k, valPrefix)
			}
		}
	})
}

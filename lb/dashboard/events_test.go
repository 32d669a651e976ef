package dashboard

import (
	"fmt"
	"testing"
)

// FuzzParseEventID: Last-Event-ID comes from the client. Whatever it holds,
// parsing never panics, and anything accepted round-trips.
func FuzzParseEventID(f *testing.F) {
	for _, s := range []string{"", "0.0", "12.3", " 5.0 ", "x.1", "1.", ".1", "1.2.3", "18446744073709551615.1", "18446744073709551616.0", "-1.2", "+1.2", "1\n.2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, b := parseEventID(s)
		if a == 0 && b == 0 {
			return
		}
		if a2, b2 := parseEventID(fmt.Sprintf("%d.%d", a, b)); a2 != a || b2 != b {
			t.Fatalf("%q -> %d.%d does not round-trip (%d.%d)", s, a, b, a2, b2)
		}
	})
}

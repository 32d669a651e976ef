package dynamostore_test

import (
	"strings"
	"testing"

	"github.com/unstuck-dev/unstuck/session/dynamostore"
)

// FuzzParseURL: store URLs come from flags and configuration. Any input
// gives a Location or an error, never a panic, and a Location written back
// with String reads back the same.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"dynamodb://sessions",
		"dynamodb://sessions?region=eu-west-1",
		"dynamodb://sessions?endpoint=http%3A%2F%2F127.0.0.1%3A8000&region=us-east-1&create=true",
		"dynamodb://sessions?endpoint=http://localhost:4567",
		"dynamodb://a.b-c_d/",
		"dynamodb://key:secret@sessions",
		"dynamodb:sessions",
		"dynamodb://sessions?create=1&create=0",
		"dynamodb://sessions#frag",
		"dynamodb://%zz",
		"dynamodb://sessions?endpoint=https://[::1]:99999",
		"redis://x",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		loc, err := dynamostore.ParseURL(raw)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "dynamodb URL: ") {
				t.Fatalf("error %q does not say what it is about", err)
			}
			return
		}
		if loc.Table == "" {
			t.Fatalf("%q parsed with no table", raw)
		}
		again, err := dynamostore.ParseURL(loc.String())
		if err != nil {
			t.Fatalf("%q -> %+v -> %q: %v", raw, loc, loc.String(), err)
		}
		if again != loc {
			t.Fatalf("%q -> %+v -> %q -> %+v", raw, loc, loc.String(), again)
		}
	})
}

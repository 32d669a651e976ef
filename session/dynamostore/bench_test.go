package dynamostore_test

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/session"
)

// BenchmarkDynamo measures one Store call against a local dynalite, one
// at a time: each is one DynamoDB request (see
// TestDynamoRoundTripsPerRequest), so this is dynalite's latency plus the
// SDK's cost, not DynamoDB's.
func BenchmarkDynamo(b *testing.B) {
	srv := testenv.DynamoDB(b)
	st := table(b, srv.Endpoint(), "sessions")
	newID := func() string {
		var r [32]byte
		_, _ = rand.Read(r[:])
		return hex.EncodeToString(r[:])
	}
	mk := func() string {
		id := newID()
		now := time.Now()
		if _, err := st.Commit(b.Context(), id, session.Change{Create: true, Set: map[string][]byte{"cart": []byte("0")}, Created: now, Deadline: now.Add(time.Hour), IdleDeadline: now.Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
		return id
	}
	b.Run("Create", func(b *testing.B) {
		for b.Loop() {
			mk()
		}
	})
	b.Run("Load", func(b *testing.B) {
		id := mk()
		for b.Loop() {
			if r, err := st.Load(b.Context(), id); err != nil || r == nil {
				b.Fatal(r, err)
			}
		}
	})
	b.Run("CommitOneKey", func(b *testing.B) {
		id := mk()
		i := 0
		for b.Loop() {
			i++
			if _, err := st.Commit(b.Context(), id, session.Change{Set: map[string][]byte{"k": []byte(strconv.Itoa(i))}}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CompareAndSwap", func(b *testing.B) {
		id := mk()
		n, old := 0, []byte("0")
		for b.Loop() {
			n++
			next := []byte(strconv.Itoa(n))
			if _, err := st.Commit(b.Context(), id, session.Change{Set: map[string][]byte{"cart": next}, Expect: map[string][]byte{"cart": old}}); err != nil {
				b.Fatal(err)
			}
			old = next
		}
	})
}

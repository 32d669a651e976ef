package workload

import (
	"testing"
	"time"
)

// A message is owed to a user only if it was surely published while the
// user was in the room: stamped after the join, acknowledged before the
// leave. One stamped in time but whose publishing outlasted the user's
// stay (the store restarting) is not a loss the system caused.
func TestRoomOwesOnlyWhatWasPublishedWhileThere(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var r room
	r.add("before-join", at(-5), at(-3))
	r.add("same-ms-as-join", at(0), at(2))
	r.add("inside", at(10), at(12))
	r.add("slow-publish", at(90), at(4000))
	r.add("acked-at-leave", at(95), at(100))
	r.add("after-leave", at(150), at(151))
	var got []string
	for _, m := range r.owed(at(0), at(100)) {
		got = append(got, m.text)
	}
	want := []string{"inside", "acked-at-leave"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("owed = %v, want %v", got, want)
	}
}

package jobs

import "testing"

// TestSendLatest: a watcher never blocks on a slow reader, and the reader
// then gets the newest value, not the first.
func TestSendLatest(t *testing.T) {
	out := make(chan RecordValue, 1)
	for rev := uint64(1); rev <= 3; rev++ {
		SendLatest(out, RecordValue{Rev: rev}) // would block without the swap
	}
	if v := <-out; v.Rev != 3 {
		t.Fatalf("reader got rev %d, want the newest, 3", v.Rev)
	}
}

package natsstore

import (
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/session"
)

// FuzzDecodeRecord: entries come from a bucket other programs may write.
func FuzzDecodeRecord(f *testing.F) {
	good, _ := encodeRecord(&session.Record{Values: map[string][]byte{"a": []byte(`1`)}, Version: 3, UserID: "u",
		Created: time.UnixMilli(1), Deadline: time.UnixMilli(5), IdleDeadline: time.UnixMilli(4)})
	for _, s := range [][]byte{good, encodeTombstone(time.UnixMilli(9)), []byte(`{}`), []byte(`{"d":1,"k":{"a":"!!"}}`),
		[]byte(`{"d":-1}`), []byte(`null`), []byte(`[`), nil} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, tomb, err := decodeRecord(b)
		if err != nil || tomb {
			if r != nil {
				t.Fatal("record returned with an error or a tombstone")
			}
			return
		}
		if r == nil || r.Values == nil || r.Deadline.IsZero() {
			t.Fatalf("accepted record %+v", r)
		}
		again, err := encodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, _, err := decodeRecord(again)
		if err != nil || r2.Version != r.Version || len(r2.Values) != len(r.Values) {
			t.Fatalf("round trip changed the record: %+v -> %+v, %v", r, r2, err)
		}
	})
}

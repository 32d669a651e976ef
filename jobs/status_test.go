package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func sampleRecord() *record {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	return &record{PayloadID: "p1", Checkpoint: []byte{1, 2, 3}, Status: Status{
		ID: "abc", Kind: "textstats", State: Running, Percent: 40, Worker: "w1",
		Attempt: 1, MaxAttempts: 3, Filename: "a.txt", Size: 10, CreatedAt: now, UpdatedAt: now,
		Checkpointed: true,
	}}
}

func TestRecordRoundTrip(t *testing.T) {
	r := sampleRecord()
	r.Status.Result = json.RawMessage(`{"n":1}`)
	data, err := encodeRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRecord(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	for _, bad := range []string{
		``, `null`, `{}`, `[]`, `{"v":2,"status":{"id":"a","kind":"k","state":"queued"}}`,
		`{"v":1,"status":{"id":"a/b","kind":"k","state":"queued"}}`,
		`{"v":1,"status":{"id":"a","kind":"k","state":"exploded"}}`,
		`{"v":1,"status":{"id":"a","kind":"k","state":"queued","percent":101}}`,
		`{"v":1,"status":{"id":"a","kind":"k","state":"queued","size":-1}}`,
		`{"v":1,"status":{"id":"a","kind":"k","state":"queued"}} {}`,
		`{"v":1,"status":{"id":"a","kind":"k","state":"queued"},"payload_id":"../etc"}`,
	} {
		if _, err := decodeRecord([]byte(bad)); err == nil {
			t.Errorf("decodeRecord(%q) accepted it", bad)
		}
	}
}

// FuzzDecodeRecord: records come from a store other processes write, so
// decoding must never panic, and whatever it accepts must satisfy the
// invariants the workers rely on and survive a re-encode unchanged.
func FuzzDecodeRecord(f *testing.F) {
	good, _ := encodeRecord(sampleRecord())
	f.Add(good)
	f.Add([]byte(`{"v":1,"status":{"id":"a","kind":"k","state":"done","result":[1,2]}}`))
	f.Add([]byte(`{"v":1,"status":{"id":"a","kind":"k","state":"queued","error":"\udc00"}}`))
	f.Add([]byte(`{"v":1,"status":{"id":"a","kind":"k","state":"dead","attempt":-1}}`))
	f.Add([]byte(`{"v":1,"checkpoint":"!!!"}`))
	f.Add([]byte(`nul`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeRecord(data)
		if err != nil {
			return
		}
		s := r.Status
		if !validID(s.ID) || !validKind(s.Kind) || !s.State.valid() || s.Percent < 0 || s.Percent > 100 ||
			s.Attempt < 0 || len(r.Checkpoint) > MaxCheckpointBytes || !utf8.ValidString(s.Error) {
			t.Fatalf("accepted an invalid record: %+v", r)
		}
		again, err := encodeRecord(r)
		if err != nil {
			return // too large after re-encoding (escaping); refused, not corrupted
		}
		r2, err := decodeRecord(again)
		if err != nil {
			t.Fatalf("re-encoded record rejected: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(r.Status.Result, r2.Status.Result) && !bytes.Equal(compact(r.Status.Result), compact(r2.Status.Result)) {
			t.Fatalf("result changed: %s -> %s", r.Status.Result, r2.Status.Result)
		}
	})
}

func compact(b []byte) []byte {
	var buf bytes.Buffer
	_ = json.Compact(&buf, b)
	return buf.Bytes()
}

// FuzzCleanFilename: a client's file name never becomes a path.
func FuzzCleanFilename(f *testing.F) {
	for _, s := range []string{`C:\Users\me\a.txt`, "../../etc/passwd", "..", "/", "a\x00b", "\xff.txt", "ok.txt"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got := cleanFilename(name)
		if strings.ContainsAny(got, `/\`) || got == ".." || got == "." || !utf8.ValidString(got) || len(got) > maxNameBytes {
			t.Fatalf("cleanFilename(%q) = %q", name, got)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("cleanFilename(%q) = %q keeps a control character", name, got)
			}
		}
	})
}

func TestLimitPayload(t *testing.T) {
	for _, c := range []struct {
		n, max int64
		ok     bool
	}{{0, 0, true}, {5, 5, true}, {6, 5, false}, {100_000, 99_999, false}, {100_000, 100_000, true}} {
		data, err := io.ReadAll(LimitPayload(strings.NewReader(strings.Repeat("x", int(c.n))), c.max))
		if c.ok && (err != nil || int64(len(data)) != c.n) {
			t.Errorf("%d bytes, limit %d: %d bytes, %v", c.n, c.max, len(data), err)
		}
		if !c.ok && !errors.Is(err, ErrTooLarge) {
			t.Errorf("%d bytes, limit %d: err = %v, want ErrTooLarge", c.n, c.max, err)
		}
	}
}

package cookiestore

import (
	"bytes"
	"crypto/rand"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/session"
)

func fuzzSealer(f *testing.F) *sealer {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	s, err := newSealer([][]byte{k})
	if err != nil {
		f.Fatal(err)
	}
	return s
}

func sampleRecord() *session.Record {
	now := time.Now()
	return &session.Record{
		Values:  map[string][]byte{"cart:mug": []byte("2"), "": {}, "odd\x00key": {0, 1, 0xff}},
		Version: 7, UserID: "ann",
		Created: now, IdleDeadline: now.Add(30 * time.Minute), Deadline: now.Add(24 * time.Hour),
	}
}

// FuzzOpen: cookie values come from the client. Whatever they hold, open
// and join must not panic, and only a value this sealer produced opens.
func FuzzOpen(f *testing.F) {
	s := fuzzSealer(f)
	raw, _, _ := parseID(newID(time.Now()))
	good := s.seal(raw, sampleRecord())
	empty := s.seal(raw, &session.Record{Created: time.Now()})
	for _, v := range []string{good, empty, good[:len(good)-1], good[:10], "", ".", "2.", "2." + good,
		strings.Join(split(good, 40), ","), "A" + good[1:], strings.Repeat("A", 200), "%%%", good + "=",
		strings.ToUpper(good)} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		parts := strings.Split(v, ",")
		joined, ok := join(parts, 32)
		if !ok {
			return
		}
		gotRaw, r, ok := s.open(joined)
		if !ok {
			return
		}
		// Only our own seals open: the fuzzer cannot forge a tag, so
		// this must be one of the seeds, and it must reseal and reopen
		// to the same record.
		again := s.seal(gotRaw, r)
		raw2, r2, ok := s.open(again)
		if !ok || raw2 != gotRaw || !sameRecord(r, r2) {
			t.Fatalf("reseal of an opened value does not round-trip")
		}
	})
}

// FuzzDecodeBody: an authenticated body still comes from whatever sealed
// it (another version, a bug): decoding must never panic or allocate
// beyond its input, and what it accepts must encode back to the same body.
func FuzzDecodeBody(f *testing.F) {
	s := fuzzSealer(f)
	raw, _, _ := parseID(newID(time.Now()))
	for _, r := range []*session.Record{sampleRecord(), {Created: time.Now()}} {
		v := s.seal(raw, r)
		_, _, _ = s.open(v)
		body := encodeBody(raw, r)
		f.Add(body)
		f.Add(body[:len(body)/2])
		f.Add(append(body, 0))
	}
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 40))
	f.Fuzz(func(t *testing.T, body []byte) {
		var raw [idLen]byte
		r, ok := decodeBody(body, &raw)
		if !ok {
			return
		}
		if len(r.Values) > len(body) {
			t.Fatalf("%d values from %d bytes", len(r.Values), len(body))
		}
		// Sealing it again and opening gives the same record.
		v := s.seal(raw, r)
		raw2, r2, ok := s.open(v)
		if !ok || raw2 != raw || !sameRecord(r, r2) {
			t.Fatalf("decoded record does not survive a seal and open: %+v", r)
		}
	})
}

// FuzzParseEntry: revocation entries are read from a shared store that
// other programs can write.
func FuzzParseEntry(f *testing.F) {
	raw, _, _ := parseID(newID(time.Now()))
	for _, e := range []entry{{key: raw, until: 1}, {user: true, key: raw, notBefore: 5, until: 9}} {
		f.Add(entryText(e))
	}
	f.Add("s.zz 1 0")
	f.Add("u." + strings.Repeat("a", 32) + " -1 -1")
	f.Add("x")
	f.Fuzz(func(t *testing.T, s string) {
		e, ok := parseEntryText(s)
		if !ok {
			return
		}
		if e.until <= 0 || e.notBefore < 0 || (!e.user && e.notBefore != 0) {
			t.Fatalf("accepted %q as %+v", s, e)
		}
		if back, ok := parseEntryText(entryText(e)); !ok || back != e {
			t.Fatalf("%q does not round-trip", s)
		}
	})
}

func sameRecord(a, b *session.Record) bool {
	return a.UserID == b.UserID && a.Version == b.Version && a.Created.Equal(b.Created) &&
		a.IdleDeadline.Equal(b.IdleDeadline) && a.Deadline.Equal(b.Deadline) &&
		maps.EqualFunc(a.Values, b.Values, bytes.Equal)
}

func TestSealOpenRoundTripKeepsMilliseconds(t *testing.T) {
	s, err := newSealer([][]byte{bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	raw, issued, _ := parseID(newID(time.Now()))
	r := sampleRecord()
	gotRaw, got, ok := s.open(s.seal(raw, r))
	if !ok || gotRaw != raw {
		t.Fatal("own seal did not open")
	}
	if !got.Created.Equal(r.Created.Truncate(time.Millisecond)) || !got.Deadline.Equal(r.Deadline.Truncate(time.Millisecond)) ||
		got.UserID != "ann" || got.Version != 7 || string(got.Values["odd\x00key"]) != "\x00\x01\xff" || len(got.Values) != 3 {
		t.Fatalf("round trip: %+v", got)
	}
	if d := time.Since(time.UnixMilli(issued)); d < 0 || d > time.Minute {
		t.Fatalf("id issue time off by %v", d)
	}
}

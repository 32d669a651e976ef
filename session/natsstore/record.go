package natsstore

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/unstuck-dev/unstuck/session"
)

// wire is a session as stored in one KV entry. Field names are short: the
// entry travels on every read.
type wire struct {
	Version  uint64            `json:"v"`
	User     string            `json:"u,omitempty"`
	Created  int64             `json:"c"`
	Deadline int64             `json:"d"`
	Idle     int64             `json:"i,omitempty"`
	Values   map[string][]byte `json:"k,omitempty"`
	Gone     bool              `json:"x,omitempty"` // tombstone
	// Op is the id of the call that wrote the entry, by which a repeat
	// of that call recognises it; Was is what a tombstone's Delete
	// removed, for a repeated Delete to return.
	Op  string          `json:"o,omitempty"`
	Was json.RawMessage `json:"w,omitempty"`
}

// entryOp is the id of the call that wrote an entry, and for a tombstone
// the encoded record it removed.
func entryOp(b []byte) (op string, was []byte) {
	var w struct {
		Op  string          `json:"o"`
		Was json.RawMessage `json:"w"`
	}
	_ = json.Unmarshal(b, &w)
	return w.Op, w.Was
}

// encodeRecord encodes r as written by the call op (optional).
func encodeRecord(r *session.Record, op ...string) ([]byte, error) {
	w := wire{
		Version: r.Version, User: r.UserID, Created: ms(r.Created), Deadline: ms(r.Deadline),
		Idle: ms(r.IdleDeadline), Values: r.Values,
	}
	if len(op) > 0 {
		w.Op = op[0]
	}
	return json.Marshal(w)
}

func encodeTombstone(deadline time.Time) []byte { return encodeDeletion(deadline, "", nil) }

// encodeDeletion is a tombstone until deadline written by the Delete call
// op, keeping the encoded record it removed for a repeat of that call.
func encodeDeletion(deadline time.Time, op string, was []byte) []byte {
	b, _ := json.Marshal(wire{Gone: true, Deadline: ms(deadline), Op: op, Was: was})
	return b
}

// decodeRecord parses an entry; tomb reports a tombstone. Entries come from
// a bucket other programs can write, so anything malformed is an error,
// never a panic.
func decodeRecord(b []byte) (r *session.Record, tomb bool, err error) {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, false, err
	}
	if w.Gone {
		return nil, true, nil
	}
	if w.Deadline <= 0 {
		return nil, false, errors.New("natsstore: session entry without deadline")
	}
	if w.Values == nil {
		w.Values = map[string][]byte{}
	}
	return &session.Record{
		Values: w.Values, Version: w.Version, UserID: w.User,
		Created: msTime(w.Created), Deadline: msTime(w.Deadline), IdleDeadline: msTime(w.Idle),
	}, false, nil
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func msTime(v int64) time.Time {
	if v <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

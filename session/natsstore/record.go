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
}

func encodeRecord(r *session.Record) ([]byte, error) {
	return json.Marshal(wire{
		Version: r.Version, User: r.UserID, Created: ms(r.Created), Deadline: ms(r.Deadline),
		Idle: ms(r.IdleDeadline), Values: r.Values,
	})
}

func encodeTombstone(deadline time.Time) []byte {
	b, _ := json.Marshal(wire{Gone: true, Deadline: ms(deadline)})
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

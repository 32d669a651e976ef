package dynamostore

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/unstuck-dev/unstuck/session"
)

// Attribute names, short because DynamoDB bills by item size and every
// name is stored in every item.
const (
	attrPK      = "pk"   // S: "s#<id>" for a session, "u#<user>" for an index entry
	attrSK      = "sk"   // S: "-" for a session, the session id for an index entry
	attrValues  = "v"    // M: encoded key -> B value
	attrVersion = "ver"  // N
	attrUser    = "uid"  // S, absent when unbound
	attrCreated = "cr"   // N: unix milliseconds
	attrDead    = "dl"   // N: absolute deadline, unix ms, 0 for none
	attrIdle    = "idl"  // N: idle deadline, unix ms, 0 for none
	attrTTL     = "exp"  // N: unix seconds, DynamoDB's TTL attribute
	attrGone    = "gone" // BOOL: the item is a tombstone
	attrWrite   = "w"    // S: id of the last write, to recognise a repeated one
)

const (
	sessionSK  = "-"
	sessionPfx = "s#"
	userPfx    = "u#"
	// maxKeyBytes bounds the partition key value (DynamoDB allows 2048).
	maxKeyBytes = 2048
)

// ErrCorrupt reports an item that this package did not write, or wrote
// with a different layout.
var ErrCorrupt = errors.New("dynamostore: malformed item")

// encodeKey maps a session key to a map attribute name. DynamoDB names
// must be non-empty UTF-8, while session keys are any Go string, so valid
// UTF-8 gets a "." prefix and anything else is base64 behind "~".
func encodeKey(k string) string {
	if utf8.ValidString(k) {
		return "." + k
	}
	return "~" + base64.RawURLEncoding.EncodeToString([]byte(k))
}

func decodeKey(name string) (string, error) {
	switch {
	case strings.HasPrefix(name, "."):
		return name[1:], nil
	case strings.HasPrefix(name, "~"):
		b, err := base64.RawURLEncoding.DecodeString(name[1:])
		if err != nil {
			return "", fmt.Errorf("%w: value name %q", ErrCorrupt, name)
		}
		return string(b), nil
	}
	return "", fmt.Errorf("%w: value name %q", ErrCorrupt, name)
}

func sessionKey(id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrPK: &types.AttributeValueMemberS{Value: sessionPfx + id},
		attrSK: &types.AttributeValueMemberS{Value: sessionSK},
	}
}

func checkID(id string) error {
	if id == "" || len(sessionPfx)+len(id) > maxKeyBytes || !utf8.ValidString(id) {
		return fmt.Errorf("dynamostore: session id of %d bytes is not a valid key", len(id))
	}
	return nil
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func num(n int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// bin never sends a nil slice, which the SDK would send as no value.
func bin(b []byte) *types.AttributeValueMemberB {
	if b == nil {
		b = []byte{}
	}
	return &types.AttributeValueMemberB{Value: b}
}

func str(s string) *types.AttributeValueMemberS { return &types.AttributeValueMemberS{Value: s} }

// ttlSeconds is the TTL attribute for a record expiring at t: whole
// seconds, rounded up so DynamoDB never deletes before the deadline.
func ttlSeconds(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}

// valuesMap encodes values as a map attribute.
func valuesMap(vals map[string][]byte) *types.AttributeValueMemberM {
	m := make(map[string]types.AttributeValue, len(vals))
	for k, v := range vals {
		m[encodeKey(k)] = bin(v)
	}
	return &types.AttributeValueMemberM{Value: m}
}

// recordItem is the whole item for record r, as Create and the
// read-modify-write path put it.
func recordItem(id string, r *session.Record, write string) map[string]types.AttributeValue {
	item := sessionKey(id)
	item[attrValues] = valuesMap(r.Values)
	item[attrVersion] = num(int64(r.Version))
	item[attrCreated] = num(millis(r.Created))
	item[attrDead] = num(millis(r.Deadline))
	item[attrIdle] = num(millis(r.IdleDeadline))
	item[attrWrite] = str(write)
	if r.UserID != "" {
		item[attrUser] = str(r.UserID)
	}
	if exp := r.ExpiresAt(); !exp.IsZero() {
		item[attrTTL] = num(ttlSeconds(exp))
	}
	return item
}

// state is what a stored session item says about the session.
type state struct {
	exists bool // an item is there (live, expired or tombstone)
	gone   bool // a tombstone
	rec    *session.Record
	write  string
}

// live reports whether the item is a session that has not expired.
func (s state) live(now time.Time) bool {
	if !s.exists || s.gone || s.rec == nil {
		return false
	}
	exp := s.rec.ExpiresAt()
	return exp.IsZero() || now.Before(exp)
}

// decodeState reads a session item (nil or empty: no item).
func decodeState(item map[string]types.AttributeValue) (state, error) {
	if len(item) == 0 {
		return state{}, nil
	}
	st := state{exists: true}
	if w, ok := item[attrWrite].(*types.AttributeValueMemberS); ok {
		st.write = w.Value
	}
	r := &session.Record{Values: map[string][]byte{}}
	var err error
	getN := func(name string) int64 {
		a, ok := item[name]
		if !ok {
			return 0
		}
		n, ok := a.(*types.AttributeValueMemberN)
		if !ok {
			err = fmt.Errorf("%w: %s is not a number", ErrCorrupt, name)
			return 0
		}
		v, perr := strconv.ParseInt(n.Value, 10, 64)
		if perr != nil {
			err = fmt.Errorf("%w: %s = %q", ErrCorrupt, name, n.Value)
		}
		return v
	}
	r.Deadline = fromMillis(getN(attrDead))
	r.IdleDeadline = fromMillis(getN(attrIdle))
	if g, ok := item[attrGone].(*types.AttributeValueMemberBOOL); ok && g.Value {
		st.gone = true
		st.rec = r // only its deadlines: when the tombstone ends
		return st, err
	}
	r.Created = fromMillis(getN(attrCreated))
	r.Version = uint64(getN(attrVersion))
	if u, ok := item[attrUser].(*types.AttributeValueMemberS); ok {
		r.UserID = u.Value
	}
	if a, ok := item[attrValues]; ok {
		m, ok := a.(*types.AttributeValueMemberM)
		if !ok {
			return st, fmt.Errorf("%w: %s is not a map", ErrCorrupt, attrValues)
		}
		for name, av := range m.Value {
			k, kerr := decodeKey(name)
			if kerr != nil {
				return st, kerr
			}
			b, ok := av.(*types.AttributeValueMemberB)
			if !ok {
				return st, fmt.Errorf("%w: value %q is not binary", ErrCorrupt, k)
			}
			v := b.Value
			if v == nil {
				v = []byte{} // present but empty, as opposed to absent
			}
			r.Values[k] = v
		}
	}
	st.rec = r
	return st, err
}

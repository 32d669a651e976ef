package realtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Command types a client sends. The protocol is documented in the package
// doc; every frame is one JSON object in one WebSocket text message.
const (
	CmdSubscribe   = "subscribe"
	CmdUnsubscribe = "unsubscribe"
	CmdPublish     = "publish"
	CmdPresence    = "presence"
	CmdPing        = "ping"
)

// Frame types the hub sends.
const (
	FrameConnected    = "connected"
	FrameSubscribed   = "subscribed"
	FrameUnsubscribed = "unsubscribed"
	FrameMessage      = "message"
	FramePublished    = "published"
	FramePresence     = "presence"
	FramePong         = "pong"
	FrameError        = "error"
	FrameDisconnect   = "disconnect"
)

// Error codes carried by error frames, stable for clients to switch on.
const (
	ErrCodeBadRequest  = "bad_request"
	ErrCodeForbidden   = "forbidden"
	ErrCodeRateLimited = "rate_limited"
	ErrCodeUnavailable = "unavailable"
	ErrCodeNotFound    = "not_subscribed"
	ErrCodeInternal    = "internal"
)

// UserChannelPrefix starts the channel that reaches every connection of one
// user: "$user:alice". Only alice may subscribe to it; only the server
// (Hub.PublishToUser) publishes to it unless Authorize allows more.
const UserChannelPrefix = "$user:"

// MaxChannelLen bounds channel names: they become Redis keys and NATS
// subjects, and an unbounded name is a cheap way to exhaust memory.
const MaxChannelLen = 255

// Command is one decoded client frame.
type Command struct {
	Type    string `json:"type"`
	ID      uint64 `json:"id,omitempty"`
	Channel string `json:"channel,omitempty"`
	// Recover asks a subscribe to replay what was missed since Offset in
	// Epoch.
	Recover bool   `json:"recover,omitempty"`
	Offset  uint64 `json:"offset,omitempty"`
	Epoch   string `json:"epoch,omitempty"`
	// Presence asks a subscribe to announce this connection in the
	// channel's presence.
	Presence bool `json:"presence,omitempty"`
	// Data is the JSON payload of a publish.
	Data json.RawMessage `json:"data,omitempty"`
}

// ErrBadFrame wraps every decoding failure, so callers can tell a client's
// mistake from a server fault with errors.Is.
var ErrBadFrame = errors.New("realtime: bad frame")

// DecodeCommand parses and validates one client frame of at most maxSize
// bytes (0 means no limit beyond the WebSocket read limit). It never panics
// on any input: it is the entry point for untrusted bytes and is fuzzed.
func DecodeCommand(frame []byte, maxSize int) (Command, error) {
	var c Command
	if maxSize > 0 && len(frame) > maxSize {
		return c, fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrBadFrame, len(frame), maxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(frame))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Command{}, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	if dec.More() {
		return Command{}, fmt.Errorf("%w: trailing data after the JSON object", ErrBadFrame)
	}
	if err := c.validate(); err != nil {
		return Command{}, err
	}
	return c, nil
}

func (c *Command) validate() error {
	switch c.Type {
	case CmdPing:
		return nil
	case CmdSubscribe, CmdUnsubscribe, CmdPresence:
		if len(c.Data) > 0 {
			return fmt.Errorf("%w: %s takes no data", ErrBadFrame, c.Type)
		}
	case CmdPublish:
		if len(c.Data) == 0 || bytes.Equal(c.Data, []byte("null")) {
			return fmt.Errorf("%w: publish needs data", ErrBadFrame)
		}
	case "":
		return fmt.Errorf("%w: missing type", ErrBadFrame)
	default:
		return fmt.Errorf("%w: unknown type %q", ErrBadFrame, c.Type)
	}
	if err := ValidChannel(c.Channel); err != nil {
		return fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	if len(c.Epoch) > 64 {
		return fmt.Errorf("%w: epoch longer than 64 bytes", ErrBadFrame)
	}
	return nil
}

// ValidChannel reports whether name can be a channel: 1 to 255 bytes of
// letters, digits and - _ . : @ / =, optionally starting with "$user:".
// The alphabet keeps names safe as Redis hash tags and NATS subject tokens.
func ValidChannel(name string) error {
	if name == "" {
		return errors.New("channel is empty")
	}
	if len(name) > MaxChannelLen {
		return fmt.Errorf("channel longer than %d bytes", MaxChannelLen)
	}
	rest := name
	if strings.HasPrefix(name, "$") {
		if !strings.HasPrefix(name, UserChannelPrefix) || len(name) == len(UserChannelPrefix) {
			return fmt.Errorf("channel %q: only %q<user> may start with $", name, UserChannelPrefix)
		}
		rest = name[len(UserChannelPrefix):]
	}
	for i := 0; i < len(rest); i++ {
		b := rest[i]
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		case b == '-' || b == '_' || b == '.' || b == ':' || b == '@' || b == '/' || b == '=':
		default:
			return fmt.Errorf("channel %q: byte %q not allowed", name, b)
		}
	}
	return nil
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return append(dst, b...)
}

// encodeMessage builds the frame for one publication once, so fanning it
// out to N connections costs N queue appends, not N encodings.
func encodeMessage(channel string, p Publication) []byte {
	b := make([]byte, 0, 64+len(channel)+len(p.Epoch)+len(p.Data))
	b = append(b, `{"type":"message","channel":`...)
	b = appendJSONString(b, channel)
	b = append(b, `,"offset":`...)
	b = strconv.AppendUint(b, p.Offset, 10)
	b = append(b, `,"epoch":`...)
	b = appendJSONString(b, p.Epoch)
	b = append(b, `,"data":`...)
	b = append(b, p.Data...)
	return append(b, '}')
}

// reply is every non-message frame the hub sends.
type reply struct {
	Type      string          `json:"type"`
	ID        uint64          `json:"id,omitempty"`
	Channel   string          `json:"channel,omitempty"`
	Offset    *uint64         `json:"offset,omitempty"`
	Epoch     string          `json:"epoch,omitempty"`
	Recovered *bool           `json:"recovered,omitempty"`
	Client    string          `json:"client,omitempty"`
	User      string          `json:"user,omitempty"`
	Clients   []PresenceEntry `json:"clients,omitempty"`
	Code      any             `json:"code,omitempty"`
	Message   string          `json:"message,omitempty"`
	Reconnect *bool           `json:"reconnect,omitempty"`
	RetryMS   int64           `json:"retry_ms,omitempty"`
	PingMS    int64           `json:"ping_ms,omitempty"`
	Local     bool            `json:"local,omitempty"`
}

func (r reply) encode() []byte {
	b, err := json.Marshal(r)
	if err != nil { // only PresenceEntry.Info could fail, and it is validated JSON
		b, _ = json.Marshal(reply{Type: FrameError, ID: r.ID, Code: ErrCodeInternal, Message: "encoding failed"})
	}
	return b
}

func errorFrame(id uint64, code, msg string) []byte {
	return reply{Type: FrameError, ID: id, Code: code, Message: msg}.encode()
}

func ptr[T any](v T) *T { return &v }

package realtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestDecodeCommand(t *testing.T) {
	good := []struct {
		in   string
		want Command
	}{
		{`{"type":"ping","id":1}`, Command{Type: CmdPing, ID: 1}},
		{`{"type":"subscribe","id":2,"channel":"chat:1","recover":true,"offset":7,"epoch":"e1","presence":true}`,
			Command{Type: CmdSubscribe, ID: 2, Channel: "chat:1", Recover: true, Offset: 7, Epoch: "e1", Presence: true}},
		{`{"type":"publish","channel":"$user:bob","data":{"x":1}}`, Command{Type: CmdPublish, Channel: "$user:bob", Data: json.RawMessage(`{"x":1}`)}},
		{`{"type":"unsubscribe","channel":"a/b=c@d.e-f_g"}`, Command{Type: CmdUnsubscribe, Channel: "a/b=c@d.e-f_g"}},
	}
	for _, g := range good {
		got, err := DecodeCommand([]byte(g.in), 0)
		if err != nil {
			t.Errorf("%s: %v", g.in, err)
			continue
		}
		if got.Type != g.want.Type || got.ID != g.want.ID || got.Channel != g.want.Channel || got.Recover != g.want.Recover ||
			got.Offset != g.want.Offset || got.Epoch != g.want.Epoch || got.Presence != g.want.Presence || !bytes.Equal(got.Data, g.want.Data) {
			t.Errorf("%s: got %+v, want %+v", g.in, got, g.want)
		}
	}
	bad := []string{
		``, `null`, `[]`, `{}`, `{"type":"nope"}`, `{"type":"subscribe"}`, `{"type":"subscribe","channel":"a b"}`,
		`{"type":"subscribe","channel":"{x}"}`, `{"type":"subscribe","channel":"$admin"}`, `{"type":"subscribe","channel":"$user:"}`,
		`{"type":"publish","channel":"c"}`, `{"type":"publish","channel":"c","data":null}`, `{"type":"publish","channel":"c","data":{}} {}`,
		`{"type":"ping","extra":1}`, `{"type":"ping","id":-1}`, `{"type":"subscribe","channel":"c","data":1}`,
		`{"type":"subscribe","channel":"` + strings.Repeat("a", 256) + `"}`,
		`{"type":"subscribe","channel":"c","epoch":"` + strings.Repeat("e", 65) + `"}`,
	}
	for _, in := range bad {
		if _, err := DecodeCommand([]byte(in), 0); !errors.Is(err, ErrBadFrame) {
			t.Errorf("%q: want ErrBadFrame, got %v", in, err)
		}
	}
	if _, err := DecodeCommand([]byte(`{"type":"ping"}`), 5); !errors.Is(err, ErrBadFrame) {
		t.Errorf("size limit not enforced: %v", err)
	}
}

// FuzzDecodeCommand: the decoder sees every byte a client sends. It must
// never panic, and what it accepts must be valid and survive a round trip.
func FuzzDecodeCommand(f *testing.F) {
	for _, s := range []string{
		`{"type":"ping","id":1}`,
		`{"type":"subscribe","id":2,"channel":"chat:1","recover":true,"offset":7,"epoch":"e1","presence":true}`,
		`{"type":"publish","id":3,"channel":"c","data":{"text":"hi","n":[1,2,3]}}`,
		`{"type":"presence","id":4,"channel":"$user:alice"}`,
		`{"type":"unsubscribe","channel":"x"}`,
		`{"type":"publish","channel":"c","data":"\u0000"}`,
		`{"type":"subscribe","channel":"c","offset":18446744073709551615}`,
		`{"type":"subscribe","channel":"c","offset":18446744073709551616}`,
		"\xff\xfe", `{"type":`, `{"type":"publish","data":1e999}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := DecodeCommand(in, 64<<10)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error not wrapping ErrBadFrame: %v", err)
			}
			return
		}
		if c.Type != CmdPing {
			if err := ValidChannel(c.Channel); err != nil {
				t.Fatalf("accepted invalid channel %q", c.Channel)
			}
		}
		if len(c.Data) > 0 && !json.Valid(c.Data) {
			t.Fatalf("accepted invalid data %q", c.Data)
		}
		again, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		c2, err := DecodeCommand(again, 0)
		if err != nil {
			t.Fatalf("round trip of %q rejected: %v", again, err)
		}
		if c2.Type != c.Type || c2.Channel != c.Channel || c2.Offset != c.Offset || c2.Epoch != c.Epoch {
			t.Fatalf("round trip changed %+v to %+v", c, c2)
		}
	})
}

func TestEncodeMessageIsJSON(t *testing.T) {
	b := encodeMessage("$user:a", Publication{Offset: 42, Epoch: "ep", Data: []byte(`{"k":"v\u2028"}`)})
	var f struct {
		Type, Channel, Epoch string
		Offset               *uint64
		Data                 json.RawMessage
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if f.Type != FrameMessage || f.Channel != "$user:a" || *f.Offset != 42 || f.Epoch != "ep" || string(f.Data) != `{"k":"v\u2028"}` {
		t.Fatalf("got %+v", f)
	}
}

func TestTokenAuth(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	now := time.Unix(1_800_000_000, 0)
	a := TokenAuth{Secret: secret, Now: func() time.Time { return now }}
	tok, err := a.Issue("alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/ws?token="+tok, nil)
	if u, err := a.Authenticate(r); err != nil || u != "alice" {
		t.Fatalf("valid token: %q %v", u, err)
	}
	r = httptest.NewRequest("GET", "/ws", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	if u, err := a.Authenticate(r); err != nil || u != "alice" {
		t.Fatalf("bearer token: %q %v", u, err)
	}
	// Rotation: a token signed with the previous secret still passes.
	rotated := TokenAuth{Secret: bytes.Repeat([]byte{8}, 32), Previous: [][]byte{secret}, Now: a.Now}
	if _, err := rotated.Verify(tok); err != nil {
		t.Fatalf("previous secret not accepted: %v", err)
	}
	p64, s64, _ := strings.Cut(tok, ".")
	forged := strings.Replace(p64, p64[:2], "Ym", 1) + "." + s64 // "bob..." payload, alice's MAC
	for name, bad := range map[string]string{
		"empty": "", "no dot": "abc", "bad base64": "!!.!!", "forged": forged, "tampered mac": p64 + "." + s64[:len(s64)-2] + "AA",
		"too long": strings.Repeat("a", 5000),
	} {
		if _, err := a.Verify(bad); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("%s: want ErrUnauthenticated, got %v", name, err)
		}
	}
	if _, err := (TokenAuth{Secret: bytes.Repeat([]byte{9}, 32), Now: a.Now}).Verify(tok); !errors.Is(err, ErrUnauthenticated) {
		t.Error("token accepted under another secret")
	}
	later := TokenAuth{Secret: secret, Now: func() time.Time { return now.Add(time.Minute) }}
	if _, err := later.Verify(tok); !errors.Is(err, ErrUnauthenticated) {
		t.Error("expired token accepted")
	}
	if _, err := (TokenAuth{Secret: []byte("short")}).Issue("a", time.Minute); err == nil {
		t.Error("short secret accepted")
	}
	if _, err := a.Issue("a|b", time.Minute); err == nil {
		t.Error("user with | accepted")
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "chat:1", "$user:a@b", `q"uote`, `back\slash`, "ctl\x01", "<&>", "é", "\u2028"} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		_ = enc.Encode(s)
		if got := string(appendJSONString(nil, s)); got != strings.TrimSuffix(want.String(), "\n") {
			t.Errorf("%q: got %s, want %s", s, got, want.String())
		}
	}
}

package proxyproto

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

func v2(cmd, fam byte, body []byte) []byte {
	b := append([]byte{}, sigV2...)
	b = append(b, 0x20|cmd, fam, byte(len(body)>>8), byte(len(body)))
	return append(b, body...)
}

func TestReadValidHeadersAndNothingMore(t *testing.T) {
	ipv4 := []byte{192, 0, 2, 1, 198, 51, 100, 2, 0x1f, 0x90, 0, 80}
	for _, tc := range []struct {
		name, in string
		want     Header
	}{
		{"v1 tcp4", "PROXY TCP4 192.0.2.1 198.51.100.2 8080 80\r\n",
			Header{Version: 1, Source: netip.MustParseAddrPort("192.0.2.1:8080"), Destination: netip.MustParseAddrPort("198.51.100.2:80")}},
		{"v1 tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 65535 443\r\n",
			Header{Version: 1, Source: netip.MustParseAddrPort("[2001:db8::1]:65535"), Destination: netip.MustParseAddrPort("[2001:db8::2]:443")}},
		{"v1 unknown", "PROXY UNKNOWN\r\n", Header{Version: 1, Local: true}},
		{"v1 unknown with addresses", "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", Header{Version: 1, Local: true}},
		{"v2 tcp4", string(v2(1, 0x11, ipv4)),
			Header{Version: 2, Source: netip.MustParseAddrPort("192.0.2.1:8080"), Destination: netip.MustParseAddrPort("198.51.100.2:80")}},
		{"v2 tcp4 with a TLV", string(v2(1, 0x11, append(append([]byte{}, ipv4...), 0xEA, 0, 3, 'v', 'p', 'c'))),
			Header{Version: 2, Source: netip.MustParseAddrPort("192.0.2.1:8080"), Destination: netip.MustParseAddrPort("198.51.100.2:80")}},
		{"v2 local", string(v2(0, 0x00, nil)), Header{Version: 2, Local: true}},
		{"v2 unix", string(v2(1, 0x31, make([]byte, 216))), Header{Version: 2, Local: true}},
		{"v2 from AppendV2", string(AppendV2(nil, netip.MustParseAddrPort("[2001:db8::7]:1234"), netip.MustParseAddrPort("10.0.0.1:443"))),
			Header{Version: 2, Source: netip.MustParseAddrPort("[2001:db8::7]:1234"), Destination: netip.MustParseAddrPort("[::ffff:10.0.0.1]:443")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := strings.NewReader(tc.in + "GET / HTTP/1.1\r\n")
			h, err := Read(r)
			if err != nil {
				t.Fatal(err)
			}
			if h != tc.want {
				t.Fatalf("got %+v, want %+v", h, tc.want)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != "GET / HTTP/1.1\r\n" {
				t.Fatalf("Read took bytes after the header: left %q", rest)
			}
			ph, n, err := Parse([]byte(tc.in + "GET"))
			if err != nil || ph != h || n != len(tc.in) {
				t.Fatalf("Parse: %+v %d %v", ph, n, err)
			}
		})
	}
}

func TestReadRefusesMalformedHeaders(t *testing.T) {
	long := "PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n"
	for _, tc := range []struct{ name, in string }{
		{"plain HTTP", "GET / HTTP/1.1\r\n\r\n"},
		{"TLS hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"},
		{"v1 without CRLF in 107 bytes", long},
		{"v1 bare LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"},
		{"v1 unknown protocol", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"},
		{"v1 family mismatch", "PROXY TCP4 ::1 ::2 1 2\r\n"},
		{"v1 bad address", "PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n"},
		{"v1 port too big", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"},
		{"v1 port with leading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"},
		{"v1 missing field", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"},
		{"v1 double space", "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"},
		{"v1 truncated", "PROXY TCP4 1.2.3.4"},
		{"v2 version 1", string(append(append([]byte{}, sigV2...), 0x11, 0x11, 0, 12))},
		{"v2 command 2", string(append(append([]byte{}, sigV2...), 0x22, 0x11, 0, 12))},
		{"v2 udp", string(v2(1, 0x12, make([]byte, 12)))},
		{"v2 short addresses", string(v2(1, 0x11, make([]byte, 8)))},
		{"v2 short ipv6", string(v2(1, 0x21, make([]byte, 20)))},
		{"v2 over the limit", string(append(append([]byte{}, sigV2...), 0x21, 0x11, 0xff, 0xff))},
		{"v2 truncated body", string(v2(1, 0x11, make([]byte, 12)))[:20]},
		{"v2 bad signature", "\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c"},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if h, err := Read(strings.NewReader(tc.in)); err == nil {
				t.Fatalf("accepted: %+v", h)
			}
		})
	}
}

func TestParseIncomplete(t *testing.T) {
	full := AppendV2(nil, netip.MustParseAddrPort("1.2.3.4:5"), netip.MustParseAddrPort("6.7.8.9:10"))
	for i := 1; i < len(full); i++ {
		if _, _, err := Parse(full[:i]); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("prefix of %d bytes: %v, want ErrIncomplete", i, err)
		}
	}
	if _, _, err := Parse([]byte("PROXY TCP4 1.2")); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("v1 prefix: %v", err)
	}
}

// FuzzRead: any input either yields a header or an error, never a panic;
// Read never takes more than the header; Read and Parse agree.
func FuzzRead(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 8080 80\r\nGET"))
	f.Add([]byte("PROXY TCP6 ::1 ::2 1 2\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(v2(1, 0x11, []byte{1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2}))
	f.Add(v2(1, 0x21, make([]byte, 40)))
	f.Add(v2(0, 0x00, nil))
	f.Add(AppendV2(nil, netip.MustParseAddrPort("[::1]:1"), netip.MustParseAddrPort("[::2]:2")))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		h, err := Read(r)
		used := len(b) - r.Len()
		ph, n, perr := Parse(b)
		if err != nil {
			if perr == nil {
				t.Fatalf("Parse accepted %q (%+v) that Read refused: %v", b, ph, err)
			}
			return
		}
		if perr != nil || ph != h || n != used {
			t.Fatalf("Read %+v (%d bytes), Parse %+v (%d bytes, %v)", h, used, ph, n, perr)
		}
		if !h.Local && (!h.Source.IsValid() || !h.Destination.IsValid()) {
			t.Fatalf("non-local header without addresses: %+v", h)
		}
		if h.Version == 2 && !h.Local {
			re := AppendV2(nil, h.Source, h.Destination)
			if rh, _, err := Parse(re); err != nil || rh.Source.Port() != h.Source.Port() {
				t.Fatalf("AppendV2 of %+v does not parse back: %+v %v", h, rh, err)
			}
		}
	})
}

package realtime

import (
	"testing"
)

// The per-message costs paid once per publication (encode) and once per
// client command (decode); the fan-out itself is measured end to end by
// bench/realtime.
func BenchmarkEncodeMessage(b *testing.B) {
	p := Publication{Offset: 123456, Epoch: "AbCdEfGhIjKl", Data: []byte(`{"text":"hello, world","user":"alice","n":42}`)}
	b.ReportAllocs()
	for b.Loop() {
		_ = encodeMessage("chat:room-42", p)
	}
}

func BenchmarkDecodeCommand(b *testing.B) {
	frame := []byte(`{"type":"publish","id":17,"channel":"chat:room-42","data":{"text":"hello, world","n":42}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeCommand(frame, 64<<10); err != nil {
			b.Fatal(err)
		}
	}
}

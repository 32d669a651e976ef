package session

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Codec turns one value into bytes and back. Each key is encoded on its own,
// so a request writes only the keys it changed.
type Codec interface {
	Encode(v any) ([]byte, error)
	// Decode must reject malformed input with an error, never panic: the
	// bytes come from a shared store that another program may have written.
	Decode(data []byte, v any) error
}

// JSONCodec encodes values with encoding/json. It is the default: readable
// in the store, and safe to decode from untrusted bytes.
type JSONCodec struct{}

// Encode implements Codec.
func (JSONCodec) Encode(v any) ([]byte, error) { return json.Marshal(v) }

// Decode implements Codec.
func (JSONCodec) Decode(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("session: decode: %w", err)
	}
	return nil
}

// ErrValueTooLarge is returned by Set and Update when an encoded value is
// larger than Config.MaxValueSize.
var ErrValueTooLarge = errors.New("session: value too large")

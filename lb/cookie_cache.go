package lb

import (
	"crypto/subtle"
	"hash/maphash"
	"sync/atomic"
	"time"
)

// verifyCache remembers cookie values a Signer has verified, so a user
// who sends the same cookie on every request costs one HMAC per value,
// not one per request (an HMAC-SHA256 check is about 2 us, most of the
// pinned path). It is a fixed array of slots indexed by a seeded hash of
// the value; a slot holds one immutable entry behind an atomic pointer, so
// a hit takes no lock and allocates nothing, and a miss that verifies
// replaces whatever the slot held.
//
// What it may never do is accept a value the Signer would refuse:
//   - the key is the whole value, compared in full (constant time), never
//     its hash alone;
//   - only values that passed the full check are stored, with the pin they
//     decoded to, and a hit re-checks the pin's expiry against now, so an
//     entry cannot outlive its cookie;
//   - the cache belongs to one Signer, whose secrets never change: a
//     reload that rotates or removes a secret builds a new Signer with an
//     empty cache.
type verifyCache struct {
	seed  maphash.Seed
	slots [verifyCacheSlots]atomic.Pointer[verifiedValue]
}

// verifyCacheSlots bounds the cache: 1024 pointers (8 KiB) plus at most
// that many small entries per Signer. Users beyond that collide and fall
// back to the HMAC, which is still correct, only slower.
const verifyCacheSlots = 1024

// maxCachedValue keeps entries small; a genuine value with a backend name
// of reasonable length is well under it.
const maxCachedValue = 160

type verifiedValue struct {
	value []byte
	pin   Pin
}

func newVerifyCache() *verifyCache { return &verifyCache{seed: maphash.MakeSeed()} }

func (c *verifyCache) slot(value []byte) *atomic.Pointer[verifiedValue] {
	return &c.slots[maphash.Bytes(c.seed, value)%verifyCacheSlots]
}

// get returns the pin value decoded to when it was verified, if it is
// cached and not expired at now.
func (c *verifyCache) get(value []byte, now time.Time) (Pin, bool) {
	if len(value) > maxCachedValue {
		return Pin{}, false
	}
	e := c.slot(value).Load()
	if e == nil || len(e.value) != len(value) ||
		subtle.ConstantTimeCompare(e.value, value) != 1 {
		return Pin{}, false
	}
	if !now.Before(e.pin.Expires) {
		return Pin{}, false
	}
	return e.pin, true
}

// put records that value verified to p.
func (c *verifyCache) put(value []byte, p Pin) {
	if len(value) > maxCachedValue {
		return
	}
	c.slot(value).Store(&verifiedValue{value: append([]byte(nil), value...), pin: p})
}

package lb

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// The verify cache must never accept what the full check refuses: an
// expired value it verified earlier, a forged value landing in the slot of
// a genuine one, or a value signed with a secret a reload removed.
func TestVerifyCacheNeverAcceptsWhatVerifyRefuses(t *testing.T) {
	s := mustSigner(t, "", secretA)
	now := time.Unix(1_800_000_000, 0)
	good := s.Sign(Pin{Backend: "b1", Expires: now.Add(time.Hour), User: 7})
	if _, ok := s.Verify([]byte(good), now); !ok {
		t.Fatal("good value rejected")
	}
	if _, ok := s.cache.get([]byte(good), now); !ok {
		t.Fatal("a verified value was not cached")
	}
	// Cached, yet past its expiry: refused, however often it comes back.
	for range 3 {
		if _, ok := s.Verify([]byte(good), now.Add(time.Hour)); ok {
			t.Fatal("expired value accepted from the cache")
		}
	}
	// A forged value (one MAC byte changed, same length) that hashes to
	// the genuine value's slot is compared in full and refused.
	slot := s.cache.slot([]byte(good))
	forged := ""
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := len(good) - 1; i > len(good)-10 && forged == ""; i-- {
		for j := 0; j < len(alphabet) && forged == ""; j++ {
			for k := 0; k < len(alphabet); k++ {
				f := []byte(good)
				f[i], f[i-1] = alphabet[j], alphabet[k]
				if string(f) != good && s.cache.slot(f) == slot {
					forged = string(f)
					break
				}
			}
		}
	}
	if forged == "" {
		t.Fatal("found no forged value sharing the genuine value's slot")
	}
	if _, ok := s.Verify([]byte(forged), now); ok {
		t.Fatalf("forged value %q accepted", forged)
	}
	if _, ok := s.Verify([]byte(good), now); !ok {
		t.Fatal("genuine value refused after a forged one probed its slot")
	}
	// A value cached by the Signer of the old secrets means nothing to the
	// Signer a reload builds without that secret.
	rotated := mustSigner(t, "", secretB)
	if _, ok := rotated.Verify([]byte(good), now); ok {
		t.Fatal("value signed with a removed secret accepted")
	}
	// Values too long to cache still verify, through the HMAC every time.
	long := s.Sign(Pin{Backend: strings.Repeat("n", maxCachedValue), Expires: now.Add(time.Hour), User: 9})
	for range 2 {
		if p, ok := s.Verify([]byte(long), now); !ok || p.User != 9 {
			t.Fatal("long value refused")
		}
	}
}

// Many users on every core: hits and replacing misses race on the same
// slots (go test -race), and each value still decodes to its own pin.
func TestVerifyCacheConcurrent(t *testing.T) {
	s := mustSigner(t, "", secretA)
	now := time.Unix(1_800_000_000, 0)
	vals := make([]string, 3*verifyCacheSlots)
	for i := range vals {
		vals[i] = s.Sign(Pin{Backend: "b1", Expires: now.Add(time.Hour), User: uint64(i + 1)})
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 2000 {
				i := (n*7 + g*131) % len(vals)
				p, ok := s.Verify([]byte(vals[i]), now)
				if !ok || p.User != uint64(i+1) {
					t.Errorf("value %d: %+v %v", i, p, ok)
					return
				}
			}
		}()
	}
	wg.Wait()
}

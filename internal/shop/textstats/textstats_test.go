package textstats

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

// TestTextStatsResume: counting in two halves through a checkpoint gives
// exactly what one pass gives, including a word split across the halves.
func TestTextStatsResume(t *testing.T) {
	text := "alpha beta\ngam" + "ma delta\n\n epsilon"
	one := &textCounter{h: sha256.New()}
	one.Write([]byte(text))
	half := &textCounter{h: sha256.New()}
	half.Write([]byte(text[:14]))
	cp, err := half.checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	resumed, err := resumeTextCounter(cp, int64(len(text)))
	if err != nil {
		t.Fatal(err)
	}
	resumed.Write([]byte(text[14:]))
	if resumed.lines != one.lines || resumed.words != one.words || resumed.offset != one.offset ||
		!bytes.Equal(resumed.h.Sum(nil), one.h.Sum(nil)) {
		t.Fatalf("resumed %+v, one pass %+v", resumed, one)
	}
	if one.lines != 3 || one.words != 5 {
		t.Fatalf("counts %d lines %d words, want 3 and 5", one.lines, one.words)
	}
}

// FuzzResumeTextCounter: a checkpoint read back from the store is never
// trusted into a panic or an impossible state.
func FuzzResumeTextCounter(f *testing.F) {
	c := &textCounter{h: sha256.New()}
	c.Write([]byte("some words\nhere"))
	cp, _ := c.checkpoint()
	f.Add(cp, int64(100))
	f.Add([]byte(`{"offset":-1}`), int64(10))
	f.Add([]byte(`{"offset":5,"hash":"AAAA"}`), int64(10))
	f.Add([]byte(`not json`), int64(0))
	f.Fuzz(func(t *testing.T, data []byte, size int64) {
		r, err := resumeTextCounter(data, size)
		if err != nil {
			return
		}
		if r.offset < 0 || r.offset > size || r.lines > r.offset || r.words > r.offset {
			t.Fatalf("accepted %+v for size %d", r, size)
		}
		r.Write([]byte("more text\n"))
	})
}

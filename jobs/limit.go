package jobs

import "io"

// LimitPayload returns a reader of r that fails with ErrTooLarge as soon as
// r yields more than max bytes. PayloadStore implementations use it so that
// an oversized payload is refused while it streams, without buffering it.
func LimitPayload(r io.Reader, max int64) io.Reader {
	return &limitedReader{r: r, left: max}
}

type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, ErrTooLarge
	}
	// Read one byte more than allowed to tell "exactly max" from "more".
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return 0, ErrTooLarge
	}
	return n, err
}

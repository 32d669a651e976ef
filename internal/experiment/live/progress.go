package live

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Printer shows progress: on a terminal one line redrawn in place, else a
// plain log line when the stage or phase changes and every 10 seconds.
type Printer struct {
	W        io.Writer
	Terminal bool

	mu       sync.Mutex
	last     Progress
	lastLine time.Time
	drawn    bool
}

// Update takes one progress report; safe for concurrent use.
func (p *Printer) Update(pr Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := fmt.Sprintf("[%d/%d] %-8s %-8s %-13s %5.1f/%.0fs  %6.1f req/s  users %4d  requests %7d  errors %5d  losses %4d",
		pr.ArchIndex+1, pr.ArchCount, pr.Arch, pr.Stage, pr.Phase, pr.Elapsed.Seconds(), pr.Total.Seconds(),
		pr.RPS, pr.Users, pr.Requests, pr.Errors, pr.Losses)
	if pr.Stage != "running" && pr.Stage != "settling" {
		line = fmt.Sprintf("[%d/%d] %-8s %s", pr.ArchIndex+1, pr.ArchCount, pr.Arch, pr.Stage)
	}
	if p.Terminal {
		fmt.Fprintf(p.W, "\r\033[K%s", line)
		p.drawn = true
		p.last = pr
		return
	}
	changed := pr.Arch != p.last.Arch || pr.Stage != p.last.Stage || pr.Phase != p.last.Phase
	if changed || time.Since(p.lastLine) >= 10*time.Second {
		fmt.Fprintln(p.W, line)
		p.lastLine = time.Now()
	}
	p.last = pr
}

// Done ends the redrawn line, so what follows starts on its own.
func (p *Printer) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Terminal && p.drawn {
		fmt.Fprintln(p.W)
		p.drawn = false
	}
}

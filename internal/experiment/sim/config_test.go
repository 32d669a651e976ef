package sim

import (
	"strings"
	"testing"
)

func TestParseRange(t *testing.T) {
	good := map[string]Range{
		"3..10000": {3, 10000}, "1e3..1e7": {1000, 10_000_000}, "100": {100, 100},
		" 10_000 ": {10000, 10000}, "5..5": {5, 5},
	}
	for in, want := range good {
		got, err := ParseRange("users", in)
		if err != nil || got != want {
			t.Errorf("ParseRange(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "abc", "3..", "..5", "10..3", "1.5", "0", "-1", "1e10", "nan", "inf", "1..2..3", strings.Repeat("9", 100)} {
		_, err := ParseRange("--users", in)
		if err == nil {
			t.Errorf("ParseRange(%q) accepted", in)
			continue
		}
		if !strings.HasPrefix(err.Error(), "--users: ") {
			t.Errorf("error for %q does not name the flag: %v", in, err)
		}
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"3..10000", "1e3..1e7", "100", "", "..", "1e999", "0x10", "3..2", "١٢"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange("instances", s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--instances: ") {
				t.Fatalf("error does not name the flag: %v", err)
			}
			return
		}
		if r.Min < 1 || r.Max > 1e9 || r.Min > r.Max {
			t.Fatalf("ParseRange(%q) = %v", s, r)
		}
		if back, err := ParseRange("instances", r.String()); err != nil || back != r {
			t.Fatalf("%v does not round-trip: %v %v", r, back, err)
		}
	})
}

func TestPointsFollowTheLadder(t *testing.T) {
	var c Config
	pts := c.Points()
	if len(pts) != 8 || pts[0] != (Point{3, 1000}) || pts[7] != (Point{10000, 10_000_000}) {
		t.Fatalf("default sweep %v", pts)
	}
	for i := 1; i < len(pts); i++ {
		if pts[i].Instances <= pts[i-1].Instances || pts[i].Users <= pts[i-1].Users {
			t.Fatalf("sweep not increasing: %v", pts)
		}
	}
	c = Config{Instances: Range{100, 100}, Users: Range{1000, 100000}}
	pts = c.Points()
	if len(pts) != 5 || pts[0].Users != 1000 || pts[4].Users != 100000 || pts[2].Instances != 100 {
		t.Fatalf("users sweep at 100 instances: %v", pts)
	}
}

func TestConfigErrorsNameTheFlag(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		flag string
	}{
		{Config{Instances: Range{1, 5}}, "--instances"},
		{Config{Users: Range{10, 20_000_000}}, "--users"},
		{Config{Archs: []string{"sticky", "jwt"}}, "--arch"},
	} {
		if err := c.cfg.defaults(); err == nil || !strings.HasPrefix(err.Error(), c.flag) {
			t.Errorf("want an error naming %s, got %v", c.flag, err)
		}
	}
}

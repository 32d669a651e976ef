package sim

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

func TestLoadLiveReadsTheIssueSchema(t *testing.T) {
	l, err := LoadLive("testdata/results.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Archs) != 4 {
		t.Fatalf("architectures %v (jwt must be skipped)", l.Archs)
	}
	if l.Users != 300 || l.Instances != 3 || l.Seed != 1 || l.Duration != time.Minute {
		t.Errorf("parameters %+v", l)
	}
	s := l.Archs["sticky"]
	if *s.SessionsLost != 190 || *s.ImbalanceMaxOverMean != 1.09 || *s.Phases["crash"].SessionsLost != 100 {
		t.Errorf("sticky %+v", s)
	}
	if l.Archs["affinity"].Phases["crash"].SessionsLost != nil {
		t.Error("a phase the file lacks must stay nil")
	}
	if _, err := LoadLive("testdata/missing.json"); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: %v", err)
	}
}

func TestDecodeLiveNamesWhatIsWrong(t *testing.T) {
	cases := map[string]string{
		`not json`:                       "not results.json",
		`{}`:                             `no "architectures"`,
		`{"architectures": {"jwt": {}}}`: "no known architecture",
		`{"architectures": {"sticky": {"sessions_lost": -1}}}`:                       "sticky.sessions_lost",
		`{"architectures": {"store": {"imbalance_max_over_mean": 0.5}}}`:             "store.imbalance_max_over_mean",
		`{"architectures": {"store": {"phases": {"crash": {"sessions_lost": -2}}}}}`: "phases.crash.sessions_lost",
		`{"architectures": {"store": {}}, "parameters": {"users": 1.5}}`:             "parameters.users",
		`{"architectures": {"store": {}}, "parameters": {"duration": "ever"}}`:       "parameters.duration",
		`{"architectures": {"store": {}}, "params": {"seed": "x"}}`:                  "parameters",
		`{"architectures": {"store": {"errors": "many"}}}`:                           "not results.json",
	}
	for in, want := range cases {
		_, err := DecodeLive(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("DecodeLive(%s) = %v, want an error with %q", in, err, want)
		}
	}
	big := bytes.Repeat([]byte(" "), MaxLiveSize+1)
	if _, err := DecodeLive(bytes.NewReader(big)); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("oversized input: %v", err)
	}
	l, err := DecodeLive(strings.NewReader(`{"architectures": {"cookie": {"cart_items_lost": 3}}, "params": {"duration_s": 12.5, "quick": true}}`))
	if err != nil || l.Duration != 12500*time.Millisecond || *l.Archs["cookie"].CartItemsLost != 3 || !l.Quick {
		t.Errorf("params/duration_s/quick: %+v %v", l, err)
	}
}

func FuzzDecodeLive(f *testing.F) {
	fixture, err := os.ReadFile("testdata/results.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(fixture)
	for _, s := range []string{`{}`, `{"architectures": {"sticky": {"phases": null}}}`, `{"architectures": {"store": {}}, "parameters": {"duration": 5}}`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := DecodeLive(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(l.Archs) == 0 {
			t.Fatal("accepted without a known architecture")
		}
		for name, a := range l.Archs {
			if a.ImbalanceMaxOverMean != nil && *a.ImbalanceMaxOverMean < 1 {
				t.Fatalf("%s: imbalance %g accepted", name, *a.ImbalanceMaxOverMean)
			}
		}
		if l.Duration < 0 || l.Users < 0 || l.Instances < 0 {
			t.Fatalf("negative parameters accepted: %+v", l)
		}
	})
}

package lb

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The README's list of metrics is what operators build dashboards and
// alerts from: every metric the balancer exports is in it.
func TestREADMEListsEveryMetric(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	bl := newTestBalancer(t, testConfig(nil))
	ch := make(chan *prometheus.Desc, 64)
	for _, c := range bl.m.all {
		c.Describe(ch)
	}
	close(ch)
	name := regexp.MustCompile(`fqName: "([a-z0-9_]+)"`)
	n := 0
	for d := range ch {
		m := name.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		n++
		if !strings.Contains(string(readme), "`"+m[1]+"`") && !strings.Contains(string(readme), "`"+m[1]+"{") {
			t.Errorf("README.md does not list %s", m[1])
		}
	}
	if n < 18 {
		t.Fatalf("only %d metrics described", n)
	}
}

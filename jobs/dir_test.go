package jobs_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/unstuck-dev/unstuck/jobs"
	"github.com/unstuck-dev/unstuck/jobs/jobstest"
)

func TestDirPayloadsConformance(t *testing.T) {
	dir := t.TempDir()
	// A partial file left by a crashed instance is removed on start.
	if err := os.WriteFile(filepath.Join(dir, "abc.part"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := jobs.NewDirPayloads(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "abc.part")); !os.IsNotExist(err) {
		t.Fatalf("leftover partial file: %v", err)
	}
	jobstest.RunPayloads(t, s)
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("%d files left in the payload dir", len(entries))
	}
}

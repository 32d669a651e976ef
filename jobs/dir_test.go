package jobs_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestDirPayloadsSweep deletes old payloads (kept by dead jobs) and keeps
// recent ones.
func TestDirPayloadsSweep(t *testing.T) {
	dir := t.TempDir()
	s, err := jobs.NewDirPayloads(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []string{"old", "new"} {
		if _, err := s.PutPayload(ctx, id, strings.NewReader(id), 10); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "old"), past, past); err != nil {
		t.Fatal(err)
	}
	n, err := s.Sweep(ctx, 24*time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 deleted", n, err)
	}
	if _, err := s.OpenPayload(ctx, "old"); err == nil {
		t.Fatal("the old payload survived")
	}
	r, err := s.OpenPayload(ctx, "new")
	if err != nil {
		t.Fatalf("the recent payload was swept: %v", err)
	}
	r.Close()
}

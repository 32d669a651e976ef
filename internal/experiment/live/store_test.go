package live

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/testenv"
)

// TestRedisStoreRestartKeepsData checks the private redis-server of
// `--store redis`: it counts the commands it served across a restart, and
// comes back on its port with what it held, as the store_restart phase
// needs.
func TestRedisStoreRestartKeepsData(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not on PATH: `apt-get install -y redis-server` (make test installs it)")
	}
	st, err := openStore("redis", t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := st.(*redisStore)
	if !st.Restartable() || st.AppArgs()[1] != "redis://"+r.addr() {
		t.Fatalf("args %v", st.AppArgs())
	}
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{r.addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.Do(ctx, client.B().Set().Key("k").Value("v").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	before, ok := st.Ops()
	if !ok || before == 0 {
		t.Fatalf("Ops = %d, %v after a SET", before, ok)
	}
	if err := st.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := st.Start(); err != nil {
		t.Fatal(err)
	}
	// The client reconnects by itself; the value survived the restart.
	testenv.Eventually(t, 20*time.Second, func() error {
		got, err := client.Do(ctx, client.B().Get().Key("k").Build()).ToString()
		if err != nil {
			return err
		}
		if got != "v" {
			return fmt.Errorf("GET k = %q, want the value written before the restart", got)
		}
		return nil
	})
	if after, ok := st.Ops(); !ok || after <= before {
		t.Fatalf("Ops went from %d to %d across the restart; want it to keep counting", before, after)
	}
}

func TestOpenStoreKinds(t *testing.T) {
	if _, err := openStore("memory", t.TempDir(), io.Discard); err == nil || !strings.Contains(err.Error(), "memory") {
		t.Errorf("memory: %v, want an error: it is not shared", err)
	}
	if _, err := openStore("mysql://h:1", t.TempDir(), io.Discard); err == nil {
		t.Error("mysql:// accepted")
	}
	st, err := openStore("redis://:secret@127.0.0.1:1", t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if st.Restartable() {
		t.Error("a store the experiment did not start claims to be restartable")
	}
	if _, ok := st.Ops(); ok {
		t.Error("a store the experiment did not start claims to count its operations")
	}
	if strings.Contains(st.Describe(), "secret") {
		t.Errorf("Describe shows the password: %s", st.Describe())
	}
	n, err := openStore("nats", t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
}

func TestProcTicks(t *testing.T) {
	a, err := procTicks(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	m := newCPUMeter()
	total, ok := m.sample([]int{os.Getpid(), 1 << 30}) // the second is no process
	if !ok || total < float64(a)/clockTicks {
		t.Fatalf("sample = %v, %v; want at least this process's %d ticks", total, ok, a)
	}
	if _, err := procTicks(1 << 30); err == nil {
		t.Error("procTicks of no process succeeded")
	}
}

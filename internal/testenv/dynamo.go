package testenv

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NodeInstall is the advice printed when Node.js or npm is missing.
const NodeInstall = "node and npm not found on PATH: DynamoDB tests run dynalite on Node.js; install them with `sudo apt-get install -y nodejs npm` (Debian/Ubuntu) or `brew install node` (macOS), or run `make test`, which installs them when it can"

// DynaliteDirEnv names an environment variable that, when set, is the
// directory dynalite is installed into (and run from) instead of the
// user's cache directory.
const DynaliteDirEnv = "UNSTUCK_DYNALITE_DIR"

// The dynalite version is pinned by a lockfile kept next to this file, so
// every machine runs the same server; `npm ci` installs exactly it.
//
//go:embed dynalite/package.json dynalite/package-lock.json
var dynaliteFiles embed.FS

// DynamoOptions configures a private dynalite. The zero value keeps
// everything in memory.
type DynamoOptions struct {
	// Persist keeps tables in a LevelDB directory under t.TempDir(), so
	// data survives Kill and Restart.
	Persist bool
}

// DynamoServer is one private dynalite process (a DynamoDB-compatible
// server on Node.js) on a loopback port.
type DynamoServer struct {
	t    testing.TB
	opts DynamoOptions
	cli  string // path of dynalite's cli.js
	dir  string
	port int

	proc process
}

// DynamoDB starts a private dynalite on a free loopback port, waits until
// it answers, and stops it when the test ends. Tables are created, deleted
// and updated at once (dynalite's default is half a second each).
//
// dynalite is installed on first use with `npm ci` into
// $UNSTUCK_DYNALITE_DIR or the user's cache directory
// (~/.cache/unstuck/dynalite-<lock hash>), never into the repository; later
// runs reuse it. Node.js and npm must be on PATH; if they are not, the test
// fails with the command that installs them.
func DynamoDB(t testing.TB, opts ...DynamoOptions) *DynamoServer {
	t.Helper()
	var o DynamoOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	s := &DynamoServer{t: t, opts: o, cli: dynaliteCLI(t), dir: t.TempDir()}
	for range 5 {
		s.port = FreePort(t)
		err := s.start()
		if err == nil {
			t.Cleanup(s.Stop)
			return s
		}
		if !errors.Is(err, errPortInUse) {
			t.Fatalf("testenv: dynalite did not start: %v", err)
		}
		// Another process took the port since FreePort: try another.
	}
	t.Fatal("testenv: dynalite did not start: 5 free ports were taken before it could bind")
	return nil
}

// errPortInUse reports a dynalite that exited because its port was taken.
var errPortInUse = errors.New("port in use")

// Endpoint is the server's base URL, http://127.0.0.1:PORT, for an SDK's
// BaseEndpoint.
func (s *DynamoServer) Endpoint() string { return "http://" + s.Addr() }

// Addr is the server's host:port.
func (s *DynamoServer) Addr() string { return loopbackAddr(s.port) }

func (s *DynamoServer) args() []string {
	args := []string{s.cli,
		"--host", "127.0.0.1",
		"--port", strconv.Itoa(s.port),
		"--createTableMs", "0",
		"--deleteTableMs", "0",
		"--updateTableMs", "0",
	}
	if s.opts.Persist {
		args = append(args, "--path", filepath.Join(s.dir, "data"))
	}
	return args
}

func (s *DynamoServer) start() error {
	node, err := exec.LookPath("node")
	if err != nil {
		s.t.Fatal(NodeInstall)
	}
	cmd := exec.Command(node, s.args()...)
	cmd.Dir = s.dir
	err = s.proc.start(cmd, 20*time.Second, func() error { return dynaliteHealthy(s.Addr()) })
	var exited *exitError
	if errors.As(err, &exited) && strings.Contains(exited.log, "EADDRINUSE") {
		return fmt.Errorf("%w: %s", errPortInUse, s.Addr())
	}
	return err
}

// dynaliteHealthy asks dynalite's health check: a GET of / answers
// "healthy: ..." once the server accepts requests.
func dynaliteHealthy(addr string) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var b [64]byte
	n, _ := resp.Body.Read(b[:])
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(b[:n], []byte("healthy")) {
		return fmt.Errorf("GET / answered %d %q", resp.StatusCode, b[:n])
	}
	return nil
}

// Kill stops the server with SIGKILL, as a crash would, and waits until the
// process is gone. Without Persist its tables are lost.
func (s *DynamoServer) Kill() { s.proc.kill() }

// Restart starts the server again on the same port (and data directory),
// after a Kill or Stop, and waits until it answers.
func (s *DynamoServer) Restart() {
	s.t.Helper()
	s.Kill()
	// The old socket may linger briefly; retry the same port for a while.
	err := WaitFor(20*time.Second, func() error {
		err := s.start()
		if err != nil && !errors.Is(err, errPortInUse) {
			s.t.Fatalf("testenv: dynalite did not restart on port %d: %v", s.port, err)
		}
		return err
	})
	if err != nil {
		s.t.Fatalf("testenv: dynalite did not restart on port %d: %v", s.port, err)
	}
}

// Stop kills the server; the test's cleanup calls it.
func (s *DynamoServer) Stop() { s.Kill() }

// dynaliteCLI returns the path of an installed dynalite's cli.js,
// installing the pinned version first if needed.
func dynaliteCLI(t testing.TB) string {
	t.Helper()
	dir, err := dynaliteDir()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	cli := filepath.Join(dir, "node_modules", "dynalite", "cli.js")
	if _, err := os.Stat(cli); err == nil {
		return cli
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal(NodeInstall)
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Fatal(NodeInstall)
	}
	if err := installDynalite(dir); err != nil {
		t.Fatalf("testenv: installing dynalite into %s: %v", dir, err)
	}
	return cli
}

// dynaliteDir is where the pinned dynalite lives: named after the
// lockfile's hash, so a change of version installs afresh beside the old.
func dynaliteDir() (string, error) {
	if d := os.Getenv(DynaliteDirEnv); d != "" {
		return filepath.Abs(d)
	}
	lock, err := dynaliteFiles.ReadFile("dynalite/package-lock.json")
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(lock)
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "unstuck", "dynalite-"+hex.EncodeToString(sum[:6])), nil
}

// installDynalite runs `npm ci` in a fresh directory beside dir and renames
// it into place, so concurrent test binaries never see a half-installed
// tree: the first rename wins and the others discard their copy.
func installDynalite(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	err = fs.WalkDir(dynaliteFiles, "dynalite", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := dynaliteFiles.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(tmp, filepath.Base(path)), b, 0o644)
	})
	if err != nil {
		return err
	}
	// --ignore-scripts: the in-memory server needs no native build, and
	// LevelDB (Persist) loads the prebuilt binary classic-level ships.
	cmd := exec.Command("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, "node_modules", "dynalite", "cli.js")); statErr == nil {
			return nil // another test binary installed it first
		}
		return errors.Join(errors.New("moving the install into place"), err)
	}
	return nil
}

package testenv

import (
	"context"
	"os/exec"
	"testing"

	"github.com/chromedp/chromedp"
)

// ChromiumInstall is the advice printed when no Chromium is found.
const ChromiumInstall = "chromium not found on PATH: install it with `sudo apt-get install -y chromium` (Debian/Ubuntu) or `brew install --cask chromium` (macOS), or run `make test`, which installs it when it can"

// Browser starts a real headless Chromium for the test and returns a
// context for its first tab; it is stopped when the test ends. Further
// isolated users (own cookies, own storage) come from NewBrowserUser. A
// missing Chromium fails the test with the install command.
func Browser(t testing.TB) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal(ChromiumInstall)
	}
	// The flags keep Chromium off the network (this machine has none) and
	// make it start fast and alike everywhere.
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1200, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first call starts the browser, which lives as long as the
	// context of that call: so no timeout here.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("testenv: start chromium: %v", err)
	}
	return ctx
}

// NewBrowserUser opens a tab in a new browser context of the browser behind
// ctx: a separate user with its own cookies, like a private window.
func NewBrowserUser(t testing.TB, ctx context.Context) context.Context {
	t.Helper()
	userCtx, cancel := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(userCtx); err != nil {
		t.Fatalf("testenv: new browser context: %v", err)
	}
	return userCtx
}

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/unstuck-dev/unstuck/internal/testenv"
)

// js evaluates a JavaScript expression in the tab and returns its value.
func js[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// do runs browser steps with a deadline.
func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// waitJS polls a boolean expression until it is true.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ok, err := chromedp.Run(cctx, chromedp.Evaluate[bool](expr))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("not yet: %s", what)
		}
		return nil
	})
}

const servedBy = `document.querySelector("#served-by").textContent`

func TestDemoInBrowser(t *testing.T) {
	browser := testenv.Browser(t)
	d := startDemo(t, "--job-delay", "150ms")
	alice := testenv.NewBrowserUser(t, browser)

	// Log in and fill the cart through the pages, as a person would.
	do(t, alice,
		chromedp.Navigate(d.shop+"/login"),
		chromedp.SendKeys(chromedp.ID("login-user"), "alice"),
		chromedp.Click(chromedp.ID("login-btn")),
		chromedp.WaitVisible(chromedp.ID("user")),
	)
	for _, sku := range []string{"demo-sku", "mug", "tee"} {
		do(t, alice,
			chromedp.Navigate(d.shop+"/"),
			chromedp.Click(chromedp.CSS(`button[data-sku="`+sku+`"]`)),
			chromedp.WaitVisible(chromedp.CSS(".flash")),
		)
	}
	do(t, alice, chromedp.Navigate(d.shop+"/cart"), chromedp.WaitVisible(chromedp.ID("cart-count")))
	if got := js[string](t, alice, `document.querySelector("#cart-count").textContent`); got != "3" {
		t.Fatalf("cart count = %q, want 3", got)
	}
	shot, err := chromedp.Run(alice, chromedp.FullScreenshot(100))
	if err == nil {
		saveScreenshot(t, "shop.png", shot)
	}

	// Crash the instance that served this page, from the page's own button.
	victim := js[string](t, alice, servedBy)
	waitJS(t, alice, "crash button", fmt.Sprintf(`!!document.querySelector('#strip [data-instance=%q] button[data-action="crash"]')`, victim))
	do(t, alice, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#strip [data-instance=%q] button[data-action="crash"]`, victim))))
	waitJS(t, alice, victim+" shown down", fmt.Sprintf(`!!document.querySelector('#strip [data-instance=%q].down')`, victim))

	// Reload: still logged in, same cart, served by someone else.
	do(t, alice, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("cart-count")))
	if user := js[string](t, alice, `document.querySelector("#user")?.textContent || ""`); user != "alice" {
		t.Fatalf("after crashing %s and reloading: user = %q, want alice", victim, user)
	}
	if got := js[string](t, alice, `document.querySelector("#cart-count").textContent`); got != "3" {
		t.Fatalf("after crash: cart count = %q, want 3", got)
	}
	if now := js[string](t, alice, servedBy); now == victim {
		t.Fatalf("page still served by crashed %s", victim)
	}
	if st, _ := doJSON(t, newUser(t), "POST", d.admin+"/api/instances/"+victim+"/restart", nil, nil); st != 200 {
		t.Fatalf("restart %s: %d", victim, st)
	}

	// Chat between two users whose pages different instances served.
	bob := testenv.NewBrowserUser(t, browser)
	do(t, bob,
		chromedp.Navigate(d.shop+"/login"),
		chromedp.SendKeys(chromedp.ID("login-user"), "bob"),
		chromedp.Click(chromedp.ID("login-btn")),
		chromedp.WaitVisible(chromedp.ID("user")),
	)
	do(t, alice, chromedp.Navigate(d.shop+"/chat"), chromedp.WaitVisible(chromedp.ID("chat-text")))
	aliceInst := js[string](t, alice, servedBy)
	testenv.Eventually(t, 30*time.Second, func() error {
		do(t, bob, chromedp.Navigate(d.shop+"/chat"), chromedp.WaitVisible(chromedp.ID("chat-text")))
		if inst := js[string](t, bob, servedBy); inst == aliceInst {
			return fmt.Errorf("bob's page also from %s", inst)
		}
		return nil
	})
	waitJS(t, alice, "alice connected", `document.querySelector("#chat-status").textContent === "connected"`)
	waitJS(t, bob, "bob connected", `document.querySelector("#chat-status").textContent === "connected"`)
	do(t, alice,
		chromedp.SendKeys(chromedp.ID("chat-text"), "hello from alice"),
		chromedp.Click(chromedp.CSS(`#chat-form button`)),
	)
	waitJS(t, bob, "bob sees alice", `[...document.querySelectorAll("#chatlog .t")].some(e => e.textContent === "hello from alice")`)
	do(t, bob,
		chromedp.SendKeys(chromedp.ID("chat-text"), "hi alice, bob here"),
		chromedp.Click(chromedp.CSS(`#chat-form button`)),
	)
	waitJS(t, alice, "alice sees bob", `[...document.querySelectorAll("#chatlog .t")].some(e => e.textContent === "hi alice, bob here")`)
	waitJS(t, alice, "presence lists both", `["alice","bob"].every(u => document.querySelector("#presence").textContent.includes(u))`)

	// An upload whose worker is crashed mid-job still finishes elsewhere.
	file := filepath.Join(t.TempDir(), "words.txt")
	if err := os.WriteFile(file, []byte(strings.Repeat("the quick brown fox jumps\n", 4000)), 0o644); err != nil {
		t.Fatal(err)
	}
	do(t, alice,
		chromedp.Navigate(d.shop+"/upload"),
		chromedp.SetUploadFiles(chromedp.ID("upload-file"), []string{file}),
		chromedp.Click(chromedp.CSS(`#upload-form button`)),
	)
	waitJS(t, alice, "job running", `/running \d+% on app-\d+/.test(document.querySelector(".job .state")?.textContent || "")`)
	state := js[string](t, alice, `document.querySelector(".job .state").textContent`)
	worker := state[strings.LastIndex(state, " ")+1:]
	crash(t, d, worker)
	waitJS(t, alice, "job done after its worker crashed", `/^done 100%/.test(document.querySelector(".job .state")?.textContent || "")`)
	final := js[string](t, alice, `document.querySelector(".job .state").textContent`)
	if strings.HasSuffix(final, " "+worker) {
		t.Fatalf("job finished on the crashed worker %s: %q", worker, final)
	}
	if res := js[string](t, alice, `document.querySelector(".job .result").textContent`); !strings.Contains(res, `"words": 20000`) {
		t.Fatalf("job result = %s, want 20000 words", res)
	}
}

// saveScreenshot keeps a screenshot as a test artefact that outlives the
// test: in $UNSTUCK_SCREENSHOTS (set it to docs/ to refresh the README's),
// else in unstuck-artifacts under the system's temp directory.
func saveScreenshot(t *testing.T, name string, png []byte) {
	dir := os.Getenv("UNSTUCK_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "unstuck-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Errorf("save screenshot: %v", err)
		return
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("save screenshot: %v", err)
		return
	}
	t.Logf("screenshot: %s", path)
}

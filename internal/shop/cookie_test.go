package shop_test

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/unstuck-dev/unstuck/internal/storeurl"
	"github.com/unstuck-dev/unstuck/session"
	"github.com/unstuck-dev/unstuck/session/cookiestore"
)

// TestShopOnCookieSessions drives the shop with its sessions sealed into
// the cookie (the experiment's "cookie" architecture): login, cart,
// logout, and a copy of the logged-in cookie refused after logout.
func TestShopOnCookieSessions(t *testing.T) {
	srv := newShopOn(t, func(parts *storeurl.Parts) session.Backend {
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		st, err := parts.CookieStore(t.Context(), cookiestore.Options{Keys: [][]byte{key}})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
	c := client()
	u := srv.URL
	if st, out := call(t, c, "POST", u+"/api/login", map[string]any{"user": "carla"}); st != 200 || out["user"] != "carla" {
		t.Fatalf("login: %d %v", st, out)
	}
	for _, sku := range []string{"mug", "mug", "tee"} {
		if st, _ := call(t, c, "POST", u+"/api/cart/items", map[string]any{"sku": sku}); st != 200 {
			t.Fatalf("add %s: %d", sku, st)
		}
	}
	if st, _ := call(t, c, "DELETE", u+"/api/cart/items/tee", nil); st != 204 {
		t.Fatalf("remove tee: %d", st)
	}
	st, cart := call(t, c, "GET", u+"/api/cart", nil)
	if got := fmt.Sprint(cart["items"]); st != 200 || got != "[map[qty:2 sku:mug]]" {
		t.Fatalf("cart = %d %s, want two mugs", st, got)
	}
	// The cookie is the session: no token, nothing readable.
	cookie := sessionCookie(t, c, u)
	if len(cookie) < 100 {
		t.Fatalf("session cookie %q does not look sealed", cookie)
	}
	if st, me := call(t, c, "GET", u+"/api/me", nil); st != 200 || me["user"] != "carla" {
		t.Fatalf("/api/me = %d %v", st, me)
	}
	if st, _ := call(t, c, "POST", u+"/api/logout", nil); st != 204 {
		t.Fatalf("logout: %d", st)
	}
	if st, _ := call(t, c, "GET", u+"/api/me", nil); st != 401 {
		t.Fatalf("after logout /api/me = %d", st)
	}
	thief := client()
	su, _ := url.Parse(u)
	thief.Jar.SetCookies(su, []*http.Cookie{{Name: "session", Value: cookie}})
	if st, _ := call(t, thief, "GET", u+"/api/me", nil); st != 401 {
		t.Fatalf("a copy of the cookie taken before logout still logs in: %d", st)
	}
	if st, cart := call(t, thief, "GET", u+"/api/cart", nil); st != 200 || fmt.Sprint(cart["items"]) != "[]" {
		t.Fatalf("a copy of the cookie taken before logout still has the cart: %d %v", st, cart)
	}
}

package shop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/unstuck-dev/unstuck/session"
)

// Each cart line is its own session key, so two tabs changing different
// items never conflict, and an add is an Update (compare-and-swap) on one
// key, so concurrent adds of one item on different instances all count.
const cartPrefix = "cart:"

// maxQty bounds one cart line; it keeps totals far from overflow and gives
// a clear 400 instead.
const maxQty = 9999

// CartItem is one line of the cart API.
type CartItem struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// cartLine is a cart line as the cart page shows it.
type cartLine struct {
	Product
	Qty       int
	LineCents int
}

// loadCart reads every cart line of the request's session, in catalogue
// order.
func loadCart(ctx context.Context) ([]CartItem, error) {
	keys, err := session.Keys(ctx)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, k := range keys {
		if sku, ok := strings.CutPrefix(k, cartPrefix); ok {
			have[sku] = true
		}
	}
	items := []CartItem{}
	for _, p := range catalogue {
		if !have[p.SKU] {
			continue
		}
		qty, ok, err := session.Get[int](ctx, cartPrefix+p.SKU)
		if err != nil {
			return nil, err
		}
		if ok && qty > 0 {
			items = append(items, CartItem{SKU: p.SKU, Qty: qty})
		}
	}
	return items, nil
}

func cartCount(items []CartItem) int {
	n := 0
	for _, it := range items {
		n += it.Qty
	}
	return n
}

// errBadQty and errUnknownSKU are the client's mistakes: 400.
var (
	errBadQty     = errors.New("qty must be a whole number from 1 to 9999")
	errUnknownSKU = errors.New("unknown sku")
	errQtyLimit   = fmt.Errorf("a cart line holds at most %d", maxQty)
)

// addToCart adds qty of sku with one compare-and-swap on that line's key.
func addToCart(ctx context.Context, sku string, qty int) (int, error) {
	if _, ok := productBySKU(sku); !ok {
		return 0, errUnknownSKU
	}
	if qty < 1 || qty > maxQty {
		return 0, errBadQty
	}
	return session.Update(ctx, cartPrefix+sku, func(old int, _ bool) (int, error) {
		if old+qty > maxQty {
			return 0, errQtyLimit
		}
		return old + qty, nil
	})
}

// setCartQty sets a line to qty; 0 removes it.
func setCartQty(ctx context.Context, sku string, qty int) error {
	if _, ok := productBySKU(sku); !ok {
		return errUnknownSKU
	}
	if qty < 0 || qty > maxQty {
		return errBadQty
	}
	if qty == 0 {
		return session.Delete(ctx, cartPrefix+sku)
	}
	return session.Set(ctx, cartPrefix+sku, qty)
}

func (s *Shop) apiCart(w http.ResponseWriter, r *http.Request) {
	items, err := loadCart(r.Context())
	if err != nil {
		s.sessionFailed(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (s *Shop) apiCartAdd(w http.ResponseWriter, r *http.Request) {
	var in struct {
		SKU string `json:"sku"`
		Qty *int   `json:"qty"`
	}
	if !decodeJSON(w, r, &in) {
		return
	}
	qty := 1
	if in.Qty != nil {
		qty = *in.Qty
	}
	n, err := addToCart(r.Context(), in.SKU, qty)
	if err != nil {
		s.sessionFailed(w, err)
		return
	}
	writeJSON(w, http.StatusOK, CartItem{SKU: in.SKU, Qty: n})
}

func (s *Shop) apiCartDelete(w http.ResponseWriter, r *http.Request) {
	sku := r.PathValue("sku")
	if _, ok := productBySKU(sku); !ok {
		writeError(w, http.StatusNotFound, "unknown sku "+sku)
		return
	}
	if err := session.Delete(r.Context(), cartPrefix+sku); err != nil {
		s.sessionFailed(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// sessionFailed answers an error from the session API that is the
// client's to fix (4xx). A store that could not answer is not the
// handler's to answer: it writes nothing, and the session middleware sends
// its ErrorHandler's answer (StoreUnavailable) instead, once.
func (s *Shop) sessionFailed(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, errUnknownSKU), errors.Is(err, errBadQty), errors.Is(err, errQtyLimit):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, session.ErrValueTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
	case errors.Is(err, session.ErrGone):
		writeError(w, http.StatusConflict, "your session ended meanwhile (logged out elsewhere): reload")
	case errors.Is(err, session.ErrUnavailable):
		// The middleware answers.
	default:
		s.log.Error("session call failed", "instance", s.cfg.Instance, "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

// StoreUnavailable is the shop's session.Config.ErrorHandler: the one
// answer to a request whose session could not be loaded or saved, a 503
// with Retry-After and the JSON error shape of every shop API error.
func StoreUnavailable(log *slog.Logger) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if errors.Is(err, session.ErrTooLarge) {
			// Not an outage: the session outgrew its cookie (the Manager
			// has logged the size), and retrying would not help.
			writeError(w, http.StatusInternalServerError, "session too large")
			return
		}
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "session store unavailable, try again")
		log.Warn("session store unavailable", "path", r.URL.Path, "err", err)
	}
}

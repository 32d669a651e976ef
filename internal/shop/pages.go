package shop

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/unstuck-dev/unstuck/session"
)

// pageData is what every page template gets.
type pageData struct {
	Title, Page string
	Instance    string
	StoreKind   string
	Sticky      bool
	User        string
	CartCount   int
	Flash       string
	FlashErr    bool

	Products   []Product
	Cart       []cartLine
	TotalCents int
	Jobs       []string

	// items is the cart page() loaded for the header's count, kept so a
	// page that lists the cart does not read it again.
	items []CartItem
}

// page loads what the layout shows on every page (user, cart count); a
// store failure is answered by the session middleware's ErrorHandler.
func (s *Shop) page(r *http.Request, name, title string) (*pageData, error) {
	user, err := session.User(r.Context())
	if err != nil {
		return nil, err
	}
	items, err := loadCart(r.Context())
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	return &pageData{
		Title: title, Page: name, Instance: s.cfg.Instance, StoreKind: s.cfg.StoreKind, Sticky: s.cfg.Sticky,
		User: user, CartCount: cartCount(items), items: items,
		Flash: q.Get("msg"), FlashErr: q.Get("err") != "",
	}, nil
}

// pageHandler serves the named page: the layout's data, then fill (if any)
// adds the page's own; an error goes to sessionFailed.
func (s *Shop) pageHandler(name, title string, fill func(r *http.Request, d *pageData) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := s.page(r, name, title)
		if err == nil && fill != nil {
			err = fill(r, d)
		}
		if err != nil {
			s.sessionFailed(w, err)
			return
		}
		s.pages.render(w, name, d)
	}
}

// redirect ends a form POST with a redirect (POST/redirect/GET), carrying a
// short message for the next page.
func redirect(w http.ResponseWriter, r *http.Request, to, msg string, isErr bool) {
	if msg != "" {
		v := url.Values{"msg": {msg}}
		if isErr {
			v.Set("err", "1")
		}
		to += "?" + v.Encode()
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (s *Shop) loginForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxJSONBody)
	user := r.PostFormValue("user")
	if err := login(r, user); err != nil {
		if err == errBadUser {
			redirect(w, r, "/login", err.Error(), true)
			return
		}
		s.sessionFailed(w, err)
		return
	}
	redirect(w, r, "/", "Welcome, "+user+". Your session ID was rotated.", false)
}

func (s *Shop) logoutForm(w http.ResponseWriter, r *http.Request) {
	if err := session.Destroy(r.Context()); err != nil {
		s.sessionFailed(w, err)
		return
	}
	redirect(w, r, "/", "Logged out.", false)
}

func formQty(r *http.Request) (int, error) {
	v := r.PostFormValue("qty")
	if v == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, errBadQty
	}
	return n, nil
}

func (s *Shop) cartAddForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxJSONBody)
	qty, err := formQty(r)
	if err == nil {
		_, err = addToCart(r.Context(), r.PostFormValue("sku"), qty)
	}
	s.formDone(w, r, "/", "Added to your cart.", err)
}

func (s *Shop) cartSetForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxJSONBody)
	qty, err := formQty(r)
	if err == nil {
		err = setCartQty(r.Context(), r.PostFormValue("sku"), qty)
	}
	s.formDone(w, r, "/cart", "Cart updated.", err)
}

func (s *Shop) cartRemoveForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxJSONBody)
	err := setCartQty(r.Context(), r.PostFormValue("sku"), 0)
	s.formDone(w, r, "/cart", "Removed.", err)
}

// formDone redirects after a cart form: the client's mistakes come back as
// a message; anything else goes to sessionFailed.
func (s *Shop) formDone(w http.ResponseWriter, r *http.Request, to, okMsg string, err error) {
	switch err {
	case nil:
		redirect(w, r, to, okMsg, false)
	case errUnknownSKU, errBadQty, errQtyLimit:
		redirect(w, r, to, err.Error(), true)
	default:
		s.sessionFailed(w, err)
	}
}

// chatForm is the no-JavaScript way to post to the chat.
func (s *Shop) chatForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxJSONBody)
	_, err := s.postChat(r, r.PostFormValue("text"))
	var ce chatError
	switch {
	case errors.As(err, &ce) && ce.status < 500:
		redirect(w, r, "/chat", ce.msg, true)
	case errors.As(err, &ce):
		w.Header().Set("Retry-After", "1")
		http.Error(w, ce.msg, ce.status)
	case err != nil:
		s.sessionFailed(w, err)
	default:
		redirect(w, r, "/chat", "", false)
	}
}

func fillHome(_ *http.Request, d *pageData) error {
	d.Products = catalogue
	return nil
}

func fillCart(_ *http.Request, d *pageData) error {
	for _, it := range d.items {
		p, _ := productBySKU(it.SKU)
		line := cartLine{Product: p, Qty: it.Qty, LineCents: p.PriceCents * it.Qty}
		d.Cart = append(d.Cart, line)
		d.TotalCents += line.LineCents
	}
	return nil
}

func fillUpload(r *http.Request, d *pageData) error {
	ids, _, err := session.Get[[]string](r.Context(), jobsKey)
	d.Jobs = ids
	return err
}

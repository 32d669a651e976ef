package shop

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
)

//go:embed web/templates/*.html
var templateFS embed.FS

//go:embed web/static
var staticFS embed.FS

// maxJSONBody bounds every JSON request body of the shop API.
const maxJSONBody = 64 << 10

// pages holds one template set per page, each the layout plus that page's
// "content" block; parsed once at start so a broken template fails loudly.
type pages map[string]*template.Template

func parsePages() (pages, error) {
	funcs := template.FuncMap{"price": func(cents int) string {
		return fmt.Sprintf("$%d.%02d", cents/100, cents%100)
	}}
	p := pages{}
	for _, name := range []string{"home", "login", "cart", "upload", "chat"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "web/templates/layout.html", "web/templates/"+name+".html")
		if err != nil {
			return nil, err
		}
		p[name] = t
	}
	return p, nil
}

func (p pages) render(w http.ResponseWriter, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := p[name].ExecuteTemplate(w, "layout", data); err != nil {
		slog.Error("render page", "page", name, "err", err)
	}
}

// writeJSON answers with v as JSON and the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers {"error": msg} with status, the shape every API
// error of the shop has.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// decodeJSON reads a bounded JSON body into v, rejecting unknown fields and
// trailing data, and writes the 4xx itself when it fails.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxJSONBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", maxJSONBody))
		case errors.Is(err, io.EOF):
			writeError(w, http.StatusBadRequest, "empty request body: JSON expected")
		default:
			writeError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
		}
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "bad JSON: trailing data after the object")
		return false
	}
	return true
}

package report

import (
	"encoding/json"
	"io"
)

// HTML writes report.html.
func HTML(w io.Writer, r *Results) error {
	b, _ := json.Marshal(r.Order)
	_, err := w.Write(b)
	return err
}

package dashboard_test

import (
	"log"
	"net/http"

	"github.com/unstuck-dev/unstuck/lb"
	"github.com/unstuck-dev/unstuck/lb/dashboard"
)

// Serving the dashboard and the admin API on one loopback listener.
func Example() {
	cfg := &lb.Config{Backends: []lb.BackendConfig{
		{Name: "app1", URL: "http://127.0.0.1:8081"},
		{Name: "app2", URL: "http://127.0.0.1:8082"},
	}}
	bl, err := lb.New(cfg, lb.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer bl.Close()
	const token = "" // set one when the listener is not loopback
	d := dashboard.New(bl, dashboard.Options{Token: token, Admin: bl.AdminHandler(token)})
	defer d.Close() // stops the sampler
	log.Fatal(http.ListenAndServe("127.0.0.1:9090", d))
}

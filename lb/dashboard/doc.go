// Package dashboard is the balancer's live dashboard: a page an operator
// opens on the admin listener to see every backend's state, traffic,
// latency and errors, a chart of requests per second, the load imbalance
// and a list of what happened (ejections, recoveries, re-pins, spills,
// drains, reloads), and to drain, undrain, add and remove backends.
//
// It reads only what any embedder can read: (*lb.Balancer).Backends and
// the balancer's Prometheus registry. A sampler takes both once per
// interval and derives rates, latency percentiles, error rates and the
// last minute's health check results from counter and histogram-bucket
// deltas, so the dashboard shows the recent past rather than averages
// since start. Actions go through the admin
// JSON API (lb.AdminHandler) from the browser, with the admin token the
// operator types in; the token is never part of a page.
//
// The page is server-rendered (it works without JavaScript) and updated
// live over Server-Sent Events at most once a second. Its script and style
// are embedded: no CDN, no build step.
package dashboard

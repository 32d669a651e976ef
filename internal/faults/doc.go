// Package faults holds the project's fault tests against replicated
// stores (issue 16): the demo shop under steady load from simulated users
// while a Redis primary, a Redis Cluster master or a NATS cluster node is
// killed. Each test counts what users saw (requests failed, how long,
// whether any answer was other than 503 with Retry-After) and what was
// lost (acknowledged cart adds that vanished), and logs one FAULT line
// with those figures, which BENCHMARKS.md's Faults table quotes.
//
// The package has no code of its own beyond this comment: everything is in
// its tests, which need redis-server, redis-sentinel and redis-cli and are
// skipped under -short.
package faults

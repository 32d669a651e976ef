// Package testenv starts the real services that integration tests talk to:
// private redis-server processes (single or clustered) on free loopback
// ports, and an in-process NATS server with JetStream; an in-process DNS
// server (miekg/dns) whose zone a test changes as it runs.
//
// Every service is stopped in t.Cleanup, and every one can be killed and
// restarted on the same address, so fault tests exercise real failures
// rather than mocks. A missing binary fails the test with the exact command
// that installs it: integration tests never skip silently.
package testenv

// Package demo runs the whole unstuck system on one machine for a person to
// try: an embedded NATS server as the shared store, app instances as real
// OS processes (so "crash" is a real SIGKILL), and the balancer in front.
//
// Fleet owns the instance processes; the demo command wires it to the
// balancer and to the control API.
package demo

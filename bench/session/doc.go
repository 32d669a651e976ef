// Package sessionbench holds the side-by-side benchmarks of the session
// library and its stores (the cookie store included) against scs v2 with its
// Redis store; the figures
// are in BENCHMARKS.md ("Sessions"), with the command that reproduces them.
package sessionbench

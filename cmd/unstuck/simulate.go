package main

import (
	"context"
	"fmt"
	"io"
)

// runSimulate runs the model as a discrete-event simulation.
func runSimulate(_ context.Context, _ experimentFlags, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "unstuck experiment --simulate: not built yet")
	return 2
}

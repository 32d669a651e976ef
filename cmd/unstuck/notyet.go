package main

import (
	"context"
	"flag"
	"fmt"
	"io"
)

// notYet is the body of a subcommand whose issue has not landed: it still
// answers --help, then says what will come and exits 2.
func notYet(name, what string) func(context.Context, []string, io.Writer, io.Writer) int {
	return func(_ context.Context, args []string, _, stderr io.Writer) int {
		fs := flag.NewFlagSet("unstuck "+name, flag.ContinueOnError)
		fs.SetOutput(stderr)
		if err := fs.Parse(args); err != nil {
			return flagExit(err)
		}
		fmt.Fprintf(stderr, "unstuck %s: not built yet: %s\n", name, what)
		return 2
	}
}

var (
	runExperiment = notYet("experiment", "the sticky-versus-store experiment is a later issue")
)

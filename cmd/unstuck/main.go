// Command unstuck is the one binary of the project: the load balancer, a
// demo shop instance, the whole demo, and the sticky-versus-store
// experiment, each a subcommand.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand. run gets the arguments after the subcommand's
// name and returns the process exit code; it owns its flag set, so
// `unstuck CMD --help` lists that command's flags.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

// commands is ordered as `unstuck --help` lists them.
func commands() []command {
	return []command{
		{"lb", "run the HTTP and WebSocket load balancer", runLB},
		{"app", "run one demo shop instance", runApp},
		{"demo", "run the balancer, three shop instances and an embedded store in one command", runDemo},
		{"experiment", "measure sticky sessions against a shared store, side by side", runExperiment},
		{"version", "print the version", runVersion},
	}
}

func main() {
	// SIGINT and SIGTERM cancel ctx; subcommands shut down gracefully on it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "unstuck: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "unstuck keeps user state out of app instances, so any instance can serve any request.")
	fmt.Fprintln(w, "\nUsage: unstuck COMMAND [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun `unstuck COMMAND --help` for a command's flags.")
}

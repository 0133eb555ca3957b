// Command lab runs the project's measurements and fault runs, each on its
// own isolated stack made with the tests' harness (shared/testenv):
//
//	go run ./scripts/lab bench     [flags]  raw broker ceiling vs end to end, own CPU per call (make bench)
//	go run ./scripts/lab soak      [flags]  the partner mix at 80% of its peak for 10 minutes, minute by minute (make soak)
//	go run ./scripts/lab preauth   [flags]  a valid partner's latency under a flood of random keys (make preauth-bench)
//	go run ./scripts/lab cluster   [flags]  a three-node RabbitMQ cluster losing nodes under load (make cluster-test)
//	go run ./scripts/lab chaos     [flags]  the fault suite (make chaos)
//	go run ./scripts/lab stack     [flags]  a stack for a command, run with its settings (make load, make prom-check)
//	go run ./scripts/lab reads     [flags]  reads beside the queue: at the workers' peak, behind a backlog, list pages
//	go run ./scripts/lab tail      [flags] -- COMMAND  receive a run's traces, explain its slowest calls stage by stage
//
// `go run ./scripts/lab COMMAND -h` lists a command's flags. Ctrl-C (or
// SIGTERM) stops a run, which then removes everything it made.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/oneoffice/provisioner/scripts/lab/bench"
	"github.com/oneoffice/provisioner/scripts/lab/faults"
	"github.com/oneoffice/provisioner/scripts/lab/preauth"
	"github.com/oneoffice/provisioner/scripts/lab/reads"
	"github.com/oneoffice/provisioner/scripts/lab/stack"
	"github.com/oneoffice/provisioner/scripts/lab/tail"
)

var commands = map[string]func(context.Context, []string) error{
	"bench":   bench.Run,
	"soak":    bench.Soak,
	"preauth": preauth.Run,
	"cluster": faults.Cluster.Run,
	"chaos":   faults.Chaos.Run,
	"stack":   stack.Run,
	"reads":   reads.Run,
	"tail":    tail.Run,
}

func main() {
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: lab bench|soak|preauth|cluster|chaos|stack|reads|tail [flags]")
		os.Exit(2)
	}
	name := os.Args[1]
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := commands[name](ctx, os.Args[2:])
	stop()
	switch {
	case err == nil:
		return
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "lab %s: %v\n", name, err)
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		os.Exit(max(exit.ExitCode(), 1)) // the status of the command lab stack ran; -1: killed
	case errors.Is(err, stack.ErrWebhooks):
		os.Exit(3)
	}
	os.Exit(1)
}

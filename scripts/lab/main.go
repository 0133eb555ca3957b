// Command lab runs the project's measurements and fault runs, each on its
// own isolated stack made with the tests' harness (shared/testenv):
//
//	go run ./scripts/lab bench     [flags]  raw broker ceiling vs end to end, own CPU per call (make bench)
//	go run ./scripts/lab preauth   [flags]  a valid partner's latency under a flood of random keys (make preauth-bench)
//	go run ./scripts/lab ratelimit [flags]  one partner's rate limit shared by two gateways
//	go run ./scripts/lab cluster   [flags]  a three-node RabbitMQ cluster losing nodes under load (make cluster-test)
//	go run ./scripts/lab chaos     [flags]  the fault suite (make chaos)
//	go run ./scripts/lab stack     [flags]  a stack for a script: prints its settings, runs until signalled (make load, make prom-check)
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
	"os/signal"
	"syscall"

	"github.com/oneoffice/provisioner/scripts/lab/bench"
	"github.com/oneoffice/provisioner/scripts/lab/chaos"
	"github.com/oneoffice/provisioner/scripts/lab/cluster"
	"github.com/oneoffice/provisioner/scripts/lab/preauth"
	"github.com/oneoffice/provisioner/scripts/lab/ratelimit"
	"github.com/oneoffice/provisioner/scripts/lab/stack"
)

var commands = map[string]func(context.Context, []string) error{
	"bench":     bench.Run,
	"preauth":   preauth.Run,
	"ratelimit": ratelimit.Run,
	"cluster":   cluster.Run,
	"chaos":     chaos.Run,
	"stack":     stack.Run,
}

func main() {
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: lab bench|preauth|ratelimit|cluster|chaos|stack [flags]")
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
	if errors.Is(err, stack.ErrWebhooks) {
		os.Exit(3)
	}
	os.Exit(1)
}

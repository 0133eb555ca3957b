// Command worker consumes provisioning commands until SIGTERM or SIGINT, then
// drains the commands in flight and exits 0. Any number may run side by side.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/oneoffice/provisioner/shared/config"
	"github.com/oneoffice/provisioner/shared/logging"
	"github.com/oneoffice/provisioner/shared/tracing"
	"github.com/oneoffice/provisioner/worker/internal/app"
)

func main() {
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := config.Load(os.Getenv, config.DefaultWorkerMetrics)
	if err != nil {
		fmt.Fprintf(os.Stderr, "worker: invalid configuration:\n%v\n", err)
		return 2
	}
	out := logging.NewWriter(os.Stdout)
	defer out.Close()
	log := logging.New(out, cfg.LogLevel, "worker")
	cfg.ApplyRuntime()
	tp, err := tracing.Setup(ctx, os.Getenv, "oneoffice-worker")
	if err != nil {
		fmt.Fprintf(os.Stderr, "worker: invalid tracing configuration: %v\n", err)
		return 2
	}
	defer tracing.Flush(tp, log)
	if err := app.Run(ctx, cfg, log, tp); err != nil {
		log.Error("worker failed", "error", err)
		return 1
	}
	return 0
}

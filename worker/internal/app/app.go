// Package app wires a worker: database, Redis, the provisioning service and the
// consume loop, plus the admin port. Run consumes until ctx ends, drains, and
// tears down in reverse order.
package app

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/oneoffice/provisioner/shared/admin"
	"github.com/oneoffice/provisioner/shared/config"
	"github.com/oneoffice/provisioner/shared/deps"
	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/worker/internal/consumer"
	"github.com/oneoffice/provisioner/worker/internal/provision"
)

// Run runs the worker until ctx ends.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	log.InfoContext(ctx, "starting worker", "config", cfg)
	db, err := deps.OpenDB(ctx, cfg.DatabaseURL, int32(cfg.DatabaseMaxConns), log)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the database
		}
		return err
	}
	defer db.Close()
	rdb, err := deps.OpenRedis(cfg.RedisURL, cfg.WorkerConcurrency+2)
	if err != nil {
		return err
	}
	defer rdb.Close()

	reg := admin.NewRegistry()
	m := consumer.NewMetrics(reg, cfg.WorkerConcurrency)
	var connected atomic.Bool
	checks := []admin.Check{
		{Name: "database", Ping: db.Ping},
		{Name: "redis", Ping: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }},
		{Name: "broker", Ping: func(context.Context) error {
			if !connected.Load() {
				return errors.New("not connected")
			}
			return nil
		}},
	}
	adm, err := admin.Listen(cfg.MetricsAddr, reg, checks)
	if err != nil {
		return err
	}
	go adm.Serve(log)
	defer adm.Stop(context.Background())

	svc := provision.New(db, provision.Config{
		StorageRoot:   cfg.StorageRoot,
		RenewalWindow: time.Duration(cfg.RenewalWindowDays) * 24 * time.Hour,
	}, provision.NewMetrics(reg))
	c := consumer.New(consumer.Config{
		AMQPURL:         cfg.AMQPURL,
		Concurrency:     cfg.WorkerConcurrency,
		Prefetch:        cfg.WorkerPrefetch,
		ShutdownTimeout: cfg.ShutdownTimeout,
		OnConnected:     connected.Store,
	}, svc, provision.IsTransient, idempotency.NewStore(rdb, cfg.IdempotencyTTL), log, m)
	log.InfoContext(ctx, "worker running", "metrics_addr", adm.Addr())
	err = c.Run(ctx)
	log.InfoContext(ctx, "worker stopped")
	return err
}

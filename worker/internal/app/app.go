// Package app wires a worker: database, Redis, the provisioning service and the
// consume loop, plus the admin port. Run consumes until ctx ends, drains the
// commands in flight, and tears down the rest in reverse order under a time
// limit.
package app

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/shared/admin"
	"github.com/oneoffice/provisioner/shared/config"
	"github.com/oneoffice/provisioner/shared/deps"
	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/lifecycle"
	"github.com/oneoffice/provisioner/shared/tracing"
	"github.com/oneoffice/provisioner/shared/webhook"
	"github.com/oneoffice/provisioner/worker/internal/consumer"
	"github.com/oneoffice/provisioner/worker/internal/provision"
	"github.com/oneoffice/provisioner/worker/internal/webhooks"
)

// teardownTimeout bounds closing what Run opened, after the consumer has
// drained for up to ShutdownTimeout. Only connections are left to close by
// then, which takes milliseconds, so a close still running after this long is
// stuck and the process exits without it.
const teardownTimeout = 5 * time.Second

// Run runs the worker until ctx ends. It returns the error that stopped it
// joined with any error of the teardown.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, tp *tracing.Provider) (err error) {
	log.InfoContext(ctx, "starting worker", "config", cfg, "tracing", tp.Enabled())
	if err := provision.CheckStorageRoot(cfg.StorageRoot); err != nil {
		return err
	}
	log.InfoContext(ctx, "tenant storage", "storage_root", cfg.StorageRoot)
	var closers lifecycle.Closers
	defer func() { err = errors.Join(err, closers.Close(teardownTimeout)) }()
	db, err := deps.OpenDB(ctx, cfg.DatabaseURL, int32(cfg.DatabaseMaxConns), log, tp.PostgreSQL())
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the database
		}
		return err
	}
	closers.Push("database", lifecycle.NoError(db.Close))
	rdb, err := deps.OpenRedis(cfg.RedisURL, cfg.WorkerConcurrency+2)
	if err != nil {
		return err
	}
	closers.Push("redis", lifecycle.NoContext(rdb.Close))
	if err := tp.Redis(rdb); err != nil {
		return err
	}

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
	closers.Push("admin server", adm.Stop)

	idem := idempotency.NewStore(rdb, cfg.IdempotencyTTL)
	svc := provision.New(db, provision.Config{
		StorageRoot:   cfg.StorageRoot,
		OrphanGrace:   cfg.StorageOrphanGrace,
		RenewalWindow: time.Duration(cfg.RenewalWindowDays) * 24 * time.Hour,
		KeyTTL:        cfg.IdempotencyTTL,
		Pending:       idem.Pending,
	}, provision.NewMetrics(reg))
	pruneCtx, stopPruning := context.WithCancel(ctx)
	defer stopPruning()
	go svc.PruneLedger(pruneCtx, cfg.LedgerRetention, log)
	go svc.SweepStorage(pruneCtx, log)
	dispatched := startWebhooks(ctx, cfg, db, log, webhooks.NewMetrics(reg))
	defer dispatched()
	c := consumer.New(consumer.Config{
		AMQPURL:         cfg.AMQPURL,
		Concurrency:     cfg.WorkerConcurrency,
		Prefetch:        cfg.WorkerPrefetch,
		ShutdownTimeout: cfg.ShutdownTimeout,
		OnConnected:     connected.Store,
	}, svc, provision.IsTransient, idem, log, m)
	c.Tracing = tp
	log.InfoContext(ctx, "worker running", "metrics_addr", adm.Addr())
	err = c.Run(ctx)
	log.InfoContext(ctx, "worker stopped")
	return err
}

// startWebhooks runs the webhook dispatcher of this worker, unless
// WEBHOOK_CONCURRENCY is 0 or no WEBHOOK_SECRET_KEY was given. The function
// it returns waits until the dispatcher, stopped with ctx, has recorded the
// deliveries in flight.
func startWebhooks(ctx context.Context, cfg config.Config, db *pgxpool.Pool, log *slog.Logger, m *webhooks.Metrics) func() {
	w := cfg.Webhook
	sealer, err := webhook.NewSealer(w.SecretKey)
	if err != nil || w.Concurrency == 0 {
		log.WarnContext(ctx, "webhook dispatcher off", "reason", cmp.Or(errString(err), "WEBHOOK_CONCURRENCY=0"))
		return func() {}
	}
	d := webhooks.New(db, sealer, webhooks.Config{
		DatabaseURL:         cfg.DatabaseURL,
		Timeout:             w.Timeout,
		Concurrency:         w.Concurrency,
		EndpointConcurrency: w.EndpointConcurrency,
		Schedule:            webhooks.Schedule{Min: w.RetryMin, Max: w.RetryMax, For: w.RetryFor},
		PollInterval:        w.PollInterval,
		Retention:           w.Retention,
		Policy:              webhook.Policy{AllowHosts: w.AllowHosts},
	}, log, m)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx)
	}()
	return func() { <-done }
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

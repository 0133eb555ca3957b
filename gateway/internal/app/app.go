// Package app wires the gateway: database (keys), Redis (idempotency), the RPC
// client, the HTTP API and the admin port; Serve runs them until ctx ends,
// drains the calls in flight, and then tears the rest down in reverse order
// under a time limit.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/gateway/internal/api"
	"github.com/oneoffice/provisioner/gateway/internal/auth"
	"github.com/oneoffice/provisioner/gateway/internal/rpc"
	"github.com/oneoffice/provisioner/gateway/internal/signing"
	"github.com/oneoffice/provisioner/shared/admin"
	"github.com/oneoffice/provisioner/shared/config"
	"github.com/oneoffice/provisioner/shared/deps"
	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/lifecycle"
	"github.com/oneoffice/provisioner/shared/reads"
	"github.com/oneoffice/provisioner/shared/store"
	"github.com/oneoffice/provisioner/shared/tracing"
)

// teardownTimeout bounds closing what Serve opened, after the calls in flight
// have drained for up to ShutdownTimeout. Only connections are left to close
// by then, which takes milliseconds, so a close still running after this long
// is stuck and the process exits without it.
const teardownTimeout = 5 * time.Second

// Serve runs the gateway until ctx ends. It returns the error that stopped
// it joined with any error of the teardown.
func Serve(ctx context.Context, cfg config.Config, log *slog.Logger, tp *tracing.Provider) (err error) {
	log.InfoContext(ctx, "starting gateway", "config", cfg, "tracing", tp.Enabled())
	var closers lifecycle.Closers
	defer func() { err = errors.Join(err, closers.Close(teardownTimeout)) }()
	db, err := deps.OpenDB(ctx, cfg.DatabaseURL, dbConns(cfg), log, tp.PostgreSQL())
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the database
		}
		return err
	}
	closers.Push("database", lifecycle.NoError(db.Close))
	// Reads have a pool of their own (a replica where READ_DATABASE_URL
	// names one), so that they never take the key lookups' connections. It
	// is no readiness check: a replica lost must not take the commands down
	// with it; the reads answer 503 meanwhile.
	readPool, err := store.Open(ctx, cfg.ReadDatabaseURL, int32(cfg.DatabaseMaxConns))
	if err != nil {
		return err
	}
	closers.Push("read database", lifecycle.NoError(readPool.Close))
	rdb, err := deps.OpenRedis(cfg.RedisURL, 0)
	if err != nil {
		return err
	}
	closers.Push("redis", lifecycle.NoContext(rdb.Close))
	if err := tp.Redis(rdb); err != nil {
		return err
	}

	reg := admin.NewRegistry()
	client := rpc.New(cfg.AMQPURL, log, rpc.NewMetrics(reg))
	client.Tracing = tp
	client.BatchMax = cfg.RPCBatchMax
	// The RPC client outlives ctx: calls draining at shutdown still need
	// their replies, so it stops only in the teardown.
	rpcCtx, stopRPC := context.WithCancel(context.WithoutCancel(ctx))
	rpcDone := make(chan struct{})
	go func() { client.Run(rpcCtx); close(rpcDone) }()
	closers.Push("rpc client", func(ctx context.Context) error {
		// Commands answered 202 unconfirmed are carried until confirmed
		// (rpc.Client.Drain), within the teardown's limit.
		err := client.Drain(ctx)
		stopRPC()
		<-rpcDone
		return err
	})

	checks := []admin.Check{
		{Name: "database", Ping: db.Ping},
		{Name: "redis", Ping: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }},
		{Name: "broker", Ping: func(context.Context) error { return brokerReady(client) }},
	}
	adm, err := admin.Listen(cfg.MetricsAddr, reg, checks)
	if err != nil {
		return err
	}
	go adm.Serve(log)
	closers.Push("admin server", adm.Stop)

	metrics := api.NewMetrics(reg)
	keys := auth.NewKeyCache(lookup(db), auth.Options{
		Lookups:       cfg.AuthLookupConcurrency,
		LookupTimeout: cfg.AuthLookupTimeout,
		Observe:       metrics.KeyLookup,
	})
	idem := idempotency.NewStore(rdb, cfg.IdempotencyTTL)
	httpApp := api.New(api.Deps{
		Auth:            keys,
		Idem:            idem,
		RPC:             client,
		Reads:           reads.New(readPool, reads.Config{Pending: idem.Pending}),
		Log:             log,
		Metrics:         metrics,
		RPCTimeout:      cfg.RPCTimeout,
		AcquireTimeout:  cfg.IdemAcquireTimeout,
		ReadTimeout:     cfg.ReadTimeout,
		RateLimit:       cfg.RateLimitRPS,
		Redis:           rdb,
		ClientRateLimit: cfg.ClientRateLimitRPS,
		Signing:         signing.New(db, rdb, reg),
		Admission: api.Admission{MaxInFlight: cfg.Admission.MaxInFlight, MinInFlight: cfg.Admission.MinInFlight,
			TargetLatency: cfg.Admission.TargetLatency},
		Tracing: tp,
	})
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	served := make(chan error, 1)
	go func() { served <- httpApp.Listener(ln) }()
	log.InfoContext(ctx, "gateway listening", "http_addr", ln.Addr().String(), "metrics_addr", adm.Addr())
	select {
	case <-ctx.Done():
	case err := <-served:
		return err
	}
	log.InfoContext(ctx, "shutting down: draining calls", "timeout", cfg.ShutdownTimeout)
	err = httpApp.ShutdownWithTimeout(cfg.ShutdownTimeout)
	if errors.Is(err, context.DeadlineExceeded) && !metrics.Busy() {
		// The HTTP server counts a connection accepted but not yet sending
		// its first request (a client's spare connection) as active until
		// its read timeout: the drain waited for it, but no call was cut short.
		log.WarnContext(ctx, "drain timed out on connections that sent no request; no call was in flight")
		return nil
	}
	return err
}

// dbConns sizes the pool for the key lookups the gateway allows at once, the
// one lane kept for keys that were valid, and the readiness check, so that
// none of them waits for a connection inside its deadline.
func dbConns(cfg config.Config) int32 {
	return int32(cfg.AuthLookupConcurrency + auth.ReservedLookups + 1)
}

func lookup(db *pgxpool.Pool) auth.KeyLookup {
	return func(ctx context.Context, h [32]byte) (auth.Key, error) { return auth.Find(ctx, db, h) }
}

func brokerReady(c *rpc.Client) error {
	if !c.Ready() {
		return errors.New("not connected")
	}
	return nil
}

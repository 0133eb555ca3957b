// Package deps opens the connections both binaries need: the PostgreSQL pool
// (migrated) and the Redis client, with timeouts short enough that a dead
// dependency yields a quick 503 or retry rather than a hang.
package deps

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/oneoffice/provisioner/shared/store"
)

// OpenDB opens the pool and applies the migrations. A database that is not up
// yet (a deploy that starts everything at once) is waited for with backoff
// until ctx ends, rather than failing the process.
func OpenDB(ctx context.Context, url string, maxConns int32, log *slog.Logger) (*pgxpool.Pool, error) {
	db, err := store.Open(ctx, url, maxConns)
	if err != nil {
		return nil, err
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 200 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = 0
	err = backoff.RetryNotify(func() error {
		mctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		_, err := store.Migrate(mctx, db)
		return err
	}, backoff.WithContext(b, ctx), func(err error, wait time.Duration) {
		log.WarnContext(ctx, "database not ready, retrying", "error", err, "retry_in", wait)
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// OpenRedis returns a client for url; it does not wait for the server.
func OpenRedis(url string, poolSize int) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse REDIS_URL: %w", err)
	}
	opt.DialTimeout = time.Second
	opt.ReadTimeout = time.Second
	opt.WriteTimeout = time.Second
	opt.PoolTimeout = 2 * time.Second
	opt.MaxRetries = 1
	if poolSize > 0 {
		opt.PoolSize = poolSize
	}
	return redis.NewClient(opt), nil
}

// Package deps opens the connections both binaries need: the PostgreSQL pool
// (migrated) and the Redis client, with timeouts short enough that a dead
// dependency yields a quick 503 or retry rather than a hang.
package deps

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/oneoffice/provisioner/shared/store"
)

// OpenDB opens the pool and applies the migrations.
func OpenDB(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	db, err := store.Open(ctx, url, maxConns)
	if err != nil {
		return nil, err
	}
	mctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := store.Migrate(mctx, db); err != nil {
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

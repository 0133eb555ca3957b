// Package deps opens the connections both binaries need: the PostgreSQL pool
// (migrated) and the Redis client, with timeouts short enough that a dead
// dependency yields a quick 503 or retry rather than a hang. Both accept the
// high-availability forms of their URLs: several PostgreSQL hosts with
// target_session_attrs=read-write (pgx connects to the one that takes
// writes), and Redis Sentinels (OpenRedis).
package deps

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/oneoffice/provisioner/shared/netx"
	"github.com/oneoffice/provisioner/shared/store"
)

// OpenDB opens the pool and applies the migrations. A database that is not up
// yet (a deploy that starts everything at once) is waited for with backoff
// until ctx ends, rather than failing the process.
func OpenDB(ctx context.Context, url string, maxConns int32, log *slog.Logger, configure ...func(*pgxpool.Config)) (*pgxpool.Pool, error) {
	db, err := store.Open(ctx, url, maxConns, configure...)
	if err != nil {
		return nil, err
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 200 * time.Millisecond
	b.MaxInterval = netx.MaxRedialPause
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
//
// url names one server, redis://[:password@]host:port/db (rediss:// for TLS),
// or, with a master_name parameter, the Sentinels that watch a master and its
// replicas:
//
//	redis://[:sentinel-password@]sentinel1:26379/db?master_name=NAME&addr=sentinel2:26379&addr=sentinel3:26379&password=MASTER-PASSWORD
//
// A Sentinel client asks the Sentinels where the master is and follows it
// when they fail it over (go-redis's FailoverClient, through its
// ParseFailoverURL).
func OpenRedis(url string, poolSize int) (*redis.Client, error) {
	if sentinel, err := isSentinelURL(url); err != nil {
		return nil, fmt.Errorf("parse REDIS_URL: %w", err)
	} else if sentinel {
		return openFailover(url, poolSize)
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse REDIS_URL: %w", err)
	}
	opt.Dialer = redisDial
	opt.DialTimeout = redisDialTimeout
	opt.ReadTimeout = redisIOTimeout
	opt.WriteTimeout = redisIOTimeout
	opt.PoolTimeout = redisPoolTimeout
	opt.ContextTimeoutEnabled = true // a call's own deadline bounds its reads and writes too
	opt.MaxRetries = 1
	if poolSize > 0 {
		opt.PoolSize = poolSize
	}
	return redis.NewClient(opt), nil
}

// Timeouts of every Redis client: short, so that a dead Redis gives a quick
// 503 or retry rather than a hang.
const (
	redisDialTimeout = time.Second
	redisIOTimeout   = time.Second
	redisPoolTimeout = 2 * time.Second
)

// redisDial opens a Redis connection with TCP_USER_TIMEOUT and keepalive
// (shared/netx) and the client's own shorter connect time-out.
var redisDial = netx.DialFunc("redis", redisDialTimeout)

// isSentinelURL reports whether url names Sentinels: a master_name parameter.
func isSentinelURL(raw string) (bool, error) {
	u, err := neturl.Parse(raw)
	if err != nil {
		return false, err
	}
	return u.Query().Has("master_name"), nil
}

func openFailover(url string, poolSize int) (*redis.Client, error) {
	opt, err := redis.ParseFailoverURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse REDIS_URL: %w", err)
	}
	if opt.MasterName == "" {
		return nil, errors.New("parse REDIS_URL: master_name is empty")
	}
	opt.Dialer = redisDial
	opt.DialTimeout = redisDialTimeout
	opt.ReadTimeout = redisIOTimeout
	opt.WriteTimeout = redisIOTimeout
	opt.PoolTimeout = redisPoolTimeout
	opt.ContextTimeoutEnabled = true // a call's own deadline bounds its reads and writes too
	// One retry, as with a single server, plus room for the switch to a new
	// master: the first call after a failover may meet the old one.
	opt.MaxRetries = 2
	if poolSize > 0 {
		opt.PoolSize = poolSize
	}
	return redis.NewFailoverClient(opt), nil
}

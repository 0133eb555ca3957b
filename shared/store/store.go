// Package store opens the PostgreSQL pool and applies the schema migrations
// embedded in the binary, with goose and a session lock so that any number of
// gateways and workers may migrate at the same time.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/oneoffice/provisioner/shared/netx"
)

//go:embed migrations/*.sql
var migrations embed.FS

// IdleInTransactionTimeout is the idle_in_transaction_session_timeout of
// every connection unless DATABASE_URL sets one: no transaction of the
// provisioner waits on its client for more than a fraction of a second, so
// 10s of silence mid-transaction means the client is gone, and its locks are
// released then rather than after the server's own TCP time-outs (hours).
const IdleInTransactionTimeout = 10 * time.Second

// ConnLifetime is how long a pooled connection, and so a cached plan, lives
// (plus up to a quarter more, so that a pool's connections do not all go at
// once).
const ConnLifetime = time.Minute

// ErrNotFound is returned by lookups that find no row.
var ErrNotFound = errors.New("not found")

// Open returns a connection pool; it does not wait for the database. Each of
// configure, if any, adjusts the pool's configuration first (tracing does).
func Open(ctx context.Context, url string, maxConns int32, configure ...func(*pgxpool.Config)) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	cfg.MaxConnIdleTime = time.Minute
	// A connection keeps the plans of its prepared statements, and PostgreSQL
	// makes a new one only when the table's statistics change (ANALYZE). A
	// plan made while a table was nearly empty can pick an index that reads
	// every row of a partner (tenants by partner and customer number for a
	// lookup by remote id); without autovacuum it is never made again, and
	// every call grows slower as the table grows. Connections are replaced
	// after ConnLifetime, so no plan outlives it.
	cfg.MaxConnLifetime = ConnLifetime
	cfg.MaxConnLifetimeJitter = ConnLifetime / 4
	// A silent link is noticed within seconds (TCP_USER_TIMEOUT and
	// keepalive, shared/netx) and a connect that gets no answer is given up
	// after DIAL_TIMEOUT; a connect_timeout in the URL wins.
	cfg.ConnConfig.DialFunc = netx.DialFunc("database", 0)
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = netx.DialTimeout()
	}
	// A transaction whose client went silent (its link cut, its process
	// frozen) holds its row locks until the server ends it: after
	// IdleInTransactionTimeout of silence. A value in the URL wins.
	if _, set := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !set {
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = fmt.Sprint(IdleInTransactionTimeout.Milliseconds())
	}
	for _, f := range configure {
		f(cfg)
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

// Migrate applies every pending migration and returns how many it applied.
func Migrate(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	db := stdlib.OpenDBFromPool(pool)
	// Closing only hands the borrowed connections back to the pool, which
	// cannot fail; the pool itself stays open.
	defer db.Close()
	return migrate(ctx, db)
}

func migrate(ctx context.Context, db *sql.DB) (int, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return 0, err
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return 0, err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithSessionLocker(locker))
	if err != nil {
		return 0, fmt.Errorf("migrations: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	return len(res), nil
}

package tracing

import (
	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
)

// PostgreSQL returns what instruments a pool's configuration with otelpgx:
// a span per query, batch, copy and connect under the caller's span. Off, it
// leaves the pool as it is, without the tracer's cost per query.
func (p *Provider) PostgreSQL() func(*pgxpool.Config) {
	return func(cfg *pgxpool.Config) {
		if p.Enabled() {
			cfg.ConnConfig.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(p.tp), otelpgx.WithTrimSQLInSpanName(),
				otelpgx.WithDisableConnectionDetailsInAttributes())
		}
	}
}

// Redis instruments rdb with redisotel: a span per command or pipeline.
// Off, it does nothing.
func (p *Provider) Redis(rdb redis.UniversalClient) error {
	if !p.Enabled() {
		return nil
	}
	return redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(p.tp), redisotel.WithDBStatement(false))
}

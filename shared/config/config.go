// Package config loads the environment variables shared by the gateway and the
// worker (SPEC section 8). Every field documents its default; an invalid value is
// an error at start, never a panic later.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/netx"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// Defaults, applied with cmp.Or when a variable is unset or empty.
const (
	DefaultDatabaseURL       = "postgres://postgres@127.0.0.1:5432/oneoffice?sslmode=disable"
	DefaultRedisURL          = "redis://127.0.0.1:6379/0"
	DefaultAMQPURL           = "amqp://guest:guest@127.0.0.1:5672/"
	DefaultHTTPAddr          = "127.0.0.1:8080"
	DefaultGatewayMetrics    = "127.0.0.1:9100"
	DefaultWorkerMetrics     = "127.0.0.1:9101"
	DefaultRPCTimeout        = 4 * time.Second
	DefaultRenewalWindowDays = 15
	DefaultIdempotencyTTL    = 24 * time.Hour
	DefaultLedgerRetention   = 30 * 24 * time.Hour
	DefaultWorkerConcurrency = 32
	DefaultWorkerPrefetch    = 64
	DefaultRateLimitRPS      = 0
	DefaultStorageRoot       = "var/tenants"
	DefaultShutdownTimeout   = 10 * time.Second
	DefaultDatabaseMaxConns  = 10
	// DefaultGoMaxProcs is one processor: a gateway or a worker uses a fraction
	// of a core, and with a second processor every goroutine a reply wakes
	// woke a second thread too (docs/PERFORMANCE.md, "One processor").
	DefaultGoMaxProcs = 1
	// DefaultGoGC lets the heap grow to five times what is live before a
	// collection: a gateway's or worker's live heap is a few MB, and at the
	// runtime's 100 the collector took 5% of a worker's CPU under load
	// (docs/PERFORMANCE.md, "The collector's target").
	DefaultGoGC = 400
)

// Defaults of the gateway's checks before authentication.
const (
	// DefaultClientRateLimitRPS is off: behind a load balancer every client
	// has the balancer's address, and one budget for all would refuse them
	// together.
	DefaultClientRateLimitRPS    = 0
	DefaultAuthLookupConcurrency = 4
	DefaultAuthLookupTimeout     = 750 * time.Millisecond
	DefaultIdemAcquireTimeout    = 750 * time.Millisecond
	DefaultReadTimeout           = 750 * time.Millisecond
)

// DefaultStorageOrphanGrace is how long a tenant directory without a tenant
// row is left alone before a worker removes it.
const DefaultStorageOrphanGrace = time.Hour

// Config is the effective configuration of one process.
type Config struct {
	DatabaseURL string // DATABASE_URL, default DefaultDatabaseURL
	// READ_DATABASE_URL, default DATABASE_URL: where the gateway answers the
	// reads (a replica, whose lag the reads then show); never migrated.
	ReadDatabaseURL string
	RedisURL        string // REDIS_URL, default DefaultRedisURL
	AMQPURL         string // AMQP_URL, default DefaultAMQPURL
	HTTPAddr        string // HTTP_ADDR (gateway API), default DefaultHTTPAddr
	MetricsAddr     string // METRICS_ADDR (admin port), default per binary

	RPCTimeout        time.Duration // RPC_TIMEOUT, default 4s: past it the gateway answers 202
	RPCBatchMax       int           // RPC_BATCH_MAX, default protocol.MaxBatch (32) commands per message at most; 1: one per message
	RenewalWindowDays int           // RENEWAL_WINDOW_DAYS, default 15
	IdempotencyTTL    time.Duration // IDEMPOTENCY_TTL, default 24h
	LedgerRetention   time.Duration // LEDGER_RETENTION, default 720h (30 days): how long getRequest finds a call
	WorkerConcurrency int           // WORKER_CONCURRENCY, default 32 commands at once per worker
	WorkerPrefetch    int           // WORKER_PREFETCH, default 64 unacked messages per worker
	RateLimitRPS      float64       // RATE_LIMIT_RPS per partner (all its keys, all gateways: kept in Redis), default 0 (off)
	StorageRoot       string        // STORAGE_ROOT, default var/tenants: one directory per tenant; absolute once loaded
	ShutdownTimeout   time.Duration // SHUTDOWN_TIMEOUT, default 10s for draining
	DatabaseMaxConns  int           // DATABASE_MAX_CONNS per worker, and the gateway's read pool, default 10 (the gateway's key lookups: AUTH_LOOKUP_CONCURRENCY + 2 more)
	LogLevel          slog.Level    // LOG_LEVEL (debug, info, warn, error), default info
	GoMaxProcs        int           // GOMAXPROCS, default 1: the processors a serving process uses (Apply sets it)
	GoDebug           string        // GODEBUG as the Go runtime read it at start, printed only (the launcher sets it)
	GoGC              string        // GOGC as the Go runtime read it at start; unset: ApplyRuntime sets DefaultGoGC

	// CLIENT_RATE_LIMIT_RPS, default 0 (off): database lookups of API keys the
	// gateway does not know, per second per client address (the TCP peer;
	// behind a load balancer, the balancer). Calls with a known key are never
	// held back by it.
	ClientRateLimitRPS float64
	// AUTH_LOOKUP_CONCURRENCY, default 4: database lookups of unknown API keys
	// at once per gateway; one more is kept for keys that were valid.
	AuthLookupConcurrency int
	// AUTH_LOOKUP_TIMEOUT, default 750ms: the longest a call waits for its key's
	// lookup, the wait for a free slot included; past it the call gets 503.
	AuthLookupTimeout time.Duration
	// IDEMPOTENCY_ACQUIRE_TIMEOUT, default 750ms: the longest a call waits
	// to take its idempotency key in Redis (which answers in a millisecond);
	// past it Redis is taken for unreachable and the call gets 503 with
	// nothing done, within a second while its link is cut.
	IdemAcquireTimeout time.Duration
	// READ_TIMEOUT, default 750ms: the longest a read waits for the database
	// (within what is left of RPC_TIMEOUT); past it the read gets 503, within
	// a second while the database is cut off. Reads are index lookups that
	// take milliseconds; raise it for a distant replica.
	ReadTimeout time.Duration

	// DIAL_TIMEOUT, default 3s: one TCP connect to PostgreSQL or RabbitMQ
	// (Redis: 1s); TCP_USER_TIMEOUT, default 5s: how long sent data may go
	// unacknowledged, and an idle connection silent, before it is taken for
	// dead; AMQP_HEARTBEAT, default 5s, the heartbeat proposed to the
	// broker. Why these values: shared/netx and shared/amqpx.
	DialTimeout    time.Duration
	TCPUserTimeout time.Duration
	AMQPHeartbeat  time.Duration

	// STORAGE_ORPHAN_GRACE, default 1h: how long a tenant directory without a
	// tenant row (its insert failed) is left alone before a worker removes it.
	StorageOrphanGrace time.Duration
	// Webhook is the WEBHOOK_* settings (webhook.go).
	Webhook Webhook
	// Admission is the ADMISSION_* settings of the gateway (admission.go).
	Admission Admission
}

// Load reads the environment. metricsDefault is the binary's own admin address.
func Load(getenv func(string) string, metricsDefault string) (Config, error) {
	p := parser{getenv: getenv}
	c := Config{
		DatabaseURL:       cmp.Or(getenv("DATABASE_URL"), DefaultDatabaseURL),
		RedisURL:          cmp.Or(getenv("REDIS_URL"), DefaultRedisURL),
		AMQPURL:           cmp.Or(getenv("AMQP_URL"), DefaultAMQPURL),
		HTTPAddr:          cmp.Or(getenv("HTTP_ADDR"), DefaultHTTPAddr),
		MetricsAddr:       cmp.Or(getenv("METRICS_ADDR"), metricsDefault),
		RPCTimeout:        p.duration("RPC_TIMEOUT", DefaultRPCTimeout),
		RPCBatchMax:       p.integer("RPC_BATCH_MAX", protocol.MaxBatch, 1, protocol.MaxBatch),
		RenewalWindowDays: p.integer("RENEWAL_WINDOW_DAYS", DefaultRenewalWindowDays, 0, 3660),
		IdempotencyTTL:    p.duration("IDEMPOTENCY_TTL", DefaultIdempotencyTTL),
		LedgerRetention:   p.duration("LEDGER_RETENTION", DefaultLedgerRetention),
		WorkerConcurrency: p.integer("WORKER_CONCURRENCY", DefaultWorkerConcurrency, 1, 4096),
		WorkerPrefetch:    p.integer("WORKER_PREFETCH", DefaultWorkerPrefetch, 1, 65535),
		RateLimitRPS:      p.float("RATE_LIMIT_RPS", DefaultRateLimitRPS),
		StorageRoot:       p.path("STORAGE_ROOT", DefaultStorageRoot),
		ShutdownTimeout:   p.duration("SHUTDOWN_TIMEOUT", DefaultShutdownTimeout),
		DatabaseMaxConns:  p.integer("DATABASE_MAX_CONNS", DefaultDatabaseMaxConns, 1, 1000),
		LogLevel:          p.level("LOG_LEVEL"),
		GoMaxProcs:        p.integer("GOMAXPROCS", DefaultGoMaxProcs, 1, 1024),
		GoDebug:           getenv("GODEBUG"),
		GoGC:              getenv("GOGC"),

		ClientRateLimitRPS:    p.float("CLIENT_RATE_LIMIT_RPS", DefaultClientRateLimitRPS),
		AuthLookupConcurrency: p.integer("AUTH_LOOKUP_CONCURRENCY", DefaultAuthLookupConcurrency, 1, 256),
		AuthLookupTimeout:     p.duration("AUTH_LOOKUP_TIMEOUT", DefaultAuthLookupTimeout),
		IdemAcquireTimeout:    p.duration("IDEMPOTENCY_ACQUIRE_TIMEOUT", DefaultIdemAcquireTimeout),
		ReadTimeout:           p.duration("READ_TIMEOUT", DefaultReadTimeout),

		StorageOrphanGrace: p.duration("STORAGE_ORPHAN_GRACE", DefaultStorageOrphanGrace),

		DialTimeout:    p.duration("DIAL_TIMEOUT", netx.DefaultDialTimeout),
		TCPUserTimeout: p.duration("TCP_USER_TIMEOUT", netx.DefaultUserTimeout),
		AMQPHeartbeat:  p.duration("AMQP_HEARTBEAT", amqpx.DefaultHeartbeat),
	}
	c.Webhook = p.webhook()
	c.ReadDatabaseURL = cmp.Or(getenv("READ_DATABASE_URL"), c.DatabaseURL)
	c.Admission = p.admission()
	p.url("DATABASE_URL", c.DatabaseURL, "postgres", "postgresql")
	if getenv("READ_DATABASE_URL") != "" {
		p.url("READ_DATABASE_URL", c.ReadDatabaseURL, "postgres", "postgresql")
	}
	p.url("REDIS_URL", c.RedisURL, "redis", "rediss")
	for _, u := range splitURLs(c.AMQPURL) { // one URL, or the nodes of a cluster
		p.url("AMQP_URL", strings.TrimSpace(u), "amqp", "amqps")
	}
	return c, errors.Join(p.errs...)
}

// ApplyRuntime gives the Go runtime the configured processors. The runtime
// read GOMAXPROCS itself at start; this makes the default of one processor hold
// when the variable is unset, without restarting the process; so does the
// collector's DefaultGoGC when GOGC is unset. It also sets the time-outs of
// every connection to come (DIAL_TIMEOUT, TCP_USER_TIMEOUT, AMQP_HEARTBEAT).
func (c Config) ApplyRuntime() {
	runtime.GOMAXPROCS(c.GoMaxProcs)
	if c.GoGC == "" {
		debug.SetGCPercent(DefaultGoGC)
	}
	netx.Set(c.DialTimeout, c.TCPUserTimeout)
	amqpx.SetHeartbeat(c.AMQPHeartbeat)
}

// LogValue prints the configuration with passwords masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("database_url", Mask(c.DatabaseURL)),
		slog.String("read_database_url", Mask(c.ReadDatabaseURL)),
		slog.String("redis_url", Mask(c.RedisURL)),
		slog.String("amqp_url", Mask(c.AMQPURL)),
		slog.String("http_addr", c.HTTPAddr),
		slog.String("metrics_addr", c.MetricsAddr),
		slog.Duration("rpc_timeout", c.RPCTimeout),
		slog.Int("rpc_batch_max", c.RPCBatchMax),
		slog.Int("renewal_window_days", c.RenewalWindowDays),
		slog.Duration("idempotency_ttl", c.IdempotencyTTL),
		slog.Duration("ledger_retention", c.LedgerRetention),
		slog.Int("worker_concurrency", c.WorkerConcurrency),
		slog.Int("worker_prefetch", c.WorkerPrefetch),
		slog.Float64("rate_limit_rps", c.RateLimitRPS),
		slog.Float64("client_rate_limit_rps", c.ClientRateLimitRPS),
		slog.Int("auth_lookup_concurrency", c.AuthLookupConcurrency),
		slog.Duration("auth_lookup_timeout", c.AuthLookupTimeout),
		slog.Duration("idempotency_acquire_timeout", c.IdemAcquireTimeout),
		slog.Duration("read_timeout", c.ReadTimeout),
		slog.String("storage_root", c.StorageRoot),
		slog.Duration("storage_orphan_grace", c.StorageOrphanGrace),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout),
		slog.Int("database_max_conns", c.DatabaseMaxConns),
		slog.Duration("dial_timeout", c.DialTimeout),
		slog.Duration("tcp_user_timeout", c.TCPUserTimeout),
		slog.Duration("amqp_heartbeat", c.AMQPHeartbeat),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("godebug", c.GoDebug),
		slog.Int("gomaxprocs", c.GoMaxProcs),
		slog.String("gogc", cmp.Or(c.GoGC, strconv.Itoa(DefaultGoGC))),
		slog.Any("webhook", c.Webhook),
		slog.Any("admission", c.Admission),
	)
}

type parser struct {
	getenv func(string) string
	errs   []error
}

func (p *parser) fail(name, value, rule string) {
	p.errs = append(p.errs, fmt.Errorf("%s=%q: must be %s", name, value, rule))
}

func (p *parser) duration(name string, def time.Duration) time.Duration {
	v := p.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		p.fail(name, v, "a positive Go duration such as 4s or 24h")
		return def
	}
	return d
}

// path reads a file system path, made absolute against the working
// directory, so that the process prints and uses the one it resolved at start.
func (p *parser) path(name, def string) string {
	v := cmp.Or(p.getenv(name), def)
	abs, err := filepath.Abs(v)
	if err != nil {
		p.fail(name, v, "a path that can be made absolute ("+err.Error()+")")
		return v
	}
	return abs
}

func (p *parser) integer(name string, def, lo, hi int) int {
	v := p.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.fail(name, v, fmt.Sprintf("an integer from %d to %d", lo, hi))
		return def
	}
	return n
}

func (p *parser) float(name string, def float64) float64 {
	v := p.getenv(name)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		p.fail(name, v, "a number >= 0")
		return def
	}
	return f
}

func (p *parser) level(name string) slog.Level {
	v := p.getenv(name)
	var l slog.Level
	if v == "" {
		return slog.LevelInfo
	}
	if err := l.UnmarshalText([]byte(strings.ToUpper(v))); err != nil {
		p.fail(name, v, "one of debug, info, warn, error")
	}
	return l
}

func (p *parser) url(name, raw string, schemes ...string) {
	u, err := url.Parse(raw)
	if err != nil {
		p.fail(name, Mask(raw), "a URL")
		return
	}
	for _, s := range schemes {
		if u.Scheme == s {
			return
		}
	}
	p.fail(name, Mask(raw), "a URL with scheme "+strings.Join(schemes, " or "))
}

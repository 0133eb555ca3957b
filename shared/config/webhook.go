package config

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Defaults of the webhooks (SPEC section 6; README "Webhooks").
const (
	DefaultWebhookTimeout             = 5 * time.Second
	DefaultWebhookConcurrency         = 16
	DefaultWebhookEndpointConcurrency = 4
	DefaultWebhookRetryFor            = 72 * time.Hour
	DefaultWebhookRetryMin            = 5 * time.Second
	DefaultWebhookRetryMax            = time.Hour
	DefaultWebhookPollInterval        = time.Second
	DefaultWebhookRetention           = 30 * 24 * time.Hour
	// webhookKeyBytes is the length of WEBHOOK_SECRET_KEY's key (AES-256).
	webhookKeyBytes = 32
)

// Webhook is the configuration of the webhooks: the key of the signing
// secrets (gateway admin commands and workers), the URL policy (both), and
// the worker's dispatcher.
type Webhook struct {
	// WEBHOOK_SECRET_KEY, default "" (webhooks off in this process: no
	// endpoint can be set, no event delivered): the base64 of 32 random bytes
	// that seals the partners' signing secrets (AES-256-GCM). The gateway's
	// webhooks commands and every worker need the same key. Never printed.
	SecretKey string
	// WEBHOOK_ALLOW_HOSTS, default none: comma-separated host names or IP
	// literals that may be called over http and on private, loopback or
	// link-local addresses (tests, local runs). Any other endpoint must be
	// https on a public address.
	AllowHosts []string
	// WEBHOOK_TIMEOUT, default 5s: the longest one delivery waits for the
	// endpoint's answer.
	Timeout time.Duration
	// WEBHOOK_CONCURRENCY, default 16: deliveries at once per worker; 0 runs
	// no dispatcher in this worker.
	Concurrency int
	// WEBHOOK_ENDPOINT_CONCURRENCY, default 4: deliveries at once to one
	// endpoint per worker, so a slow endpoint holds at most that many of
	// WEBHOOK_CONCURRENCY.
	EndpointConcurrency int
	// WEBHOOK_RETRY_FOR, default 72h (three days, as Stripe's): how long an undelivered event is
	// retried after it occurred (or was replayed) before it is failed.
	RetryFor time.Duration
	// WEBHOOK_RETRY_MIN, default 5s: the pause after the first failed
	// attempt; each next one doubles, up to WEBHOOK_RETRY_MAX (default 1h),
	// each with a jitter of +-20%.
	RetryMin, RetryMax time.Duration
	// WEBHOOK_POLL_INTERVAL, default 1s: how often a dispatcher looks for
	// due events without being notified (retries, leases that ran out).
	PollInterval time.Duration
	// WEBHOOK_RETENTION, default 720h (30 days): delivered and failed events
	// older than this are pruned; a failed event can be replayed until then.
	Retention time.Duration
}

func (p *parser) webhook() Webhook {
	w := Webhook{
		SecretKey:           p.getenv("WEBHOOK_SECRET_KEY"),
		AllowHosts:          p.list("WEBHOOK_ALLOW_HOSTS"),
		Timeout:             p.duration("WEBHOOK_TIMEOUT", DefaultWebhookTimeout),
		Concurrency:         p.integer("WEBHOOK_CONCURRENCY", DefaultWebhookConcurrency, 0, 1024),
		EndpointConcurrency: p.integer("WEBHOOK_ENDPOINT_CONCURRENCY", DefaultWebhookEndpointConcurrency, 1, 1024),
		RetryFor:            p.duration("WEBHOOK_RETRY_FOR", DefaultWebhookRetryFor),
		RetryMin:            p.duration("WEBHOOK_RETRY_MIN", DefaultWebhookRetryMin),
		RetryMax:            p.duration("WEBHOOK_RETRY_MAX", DefaultWebhookRetryMax),
		PollInterval:        p.duration("WEBHOOK_POLL_INTERVAL", DefaultWebhookPollInterval),
		Retention:           p.duration("WEBHOOK_RETENTION", DefaultWebhookRetention),
	}
	if w.SecretKey != "" {
		if k, err := base64.StdEncoding.DecodeString(w.SecretKey); err != nil || len(k) != webhookKeyBytes {
			p.fail("WEBHOOK_SECRET_KEY", masked, "the base64 of 32 random bytes (openssl rand -base64 32)")
		}
	}
	if w.RetryMin > w.RetryMax {
		p.fail("WEBHOOK_RETRY_MIN", w.RetryMin.String(), "at most WEBHOOK_RETRY_MAX ("+w.RetryMax.String()+")")
	}
	if w.Timeout > time.Minute {
		p.fail("WEBHOOK_TIMEOUT", w.Timeout.String(), "at most 1m")
	}
	return w
}

// list reads a comma-separated list, blanks dropped.
func (p *parser) list(name string) []string {
	var out []string
	for _, s := range strings.Split(p.getenv(name), ",") {
		if s = strings.TrimSpace(s); s != "" {
			if strings.ContainsAny(s, "/ @") {
				p.fail(name, s, "a comma-separated list of host names or IP literals, without scheme or port")
				continue
			}
			out = append(out, s)
		}
	}
	return out
}

// LogValue prints the webhooks' configuration; the key only as set or not.
func (w Webhook) LogValue() slog.Value {
	key := ""
	if w.SecretKey != "" {
		key = masked
	}
	return slog.GroupValue(
		slog.String("secret_key", key),
		slog.String("allow_hosts", strings.Join(w.AllowHosts, ",")),
		slog.Duration("timeout", w.Timeout),
		slog.Int("concurrency", w.Concurrency),
		slog.Int("endpoint_concurrency", w.EndpointConcurrency),
		slog.Duration("retry_for", w.RetryFor),
		slog.Duration("retry_min", w.RetryMin),
		slog.Duration("retry_max", w.RetryMax),
		slog.Duration("poll_interval", w.PollInterval),
		slog.Duration("retention", w.Retention),
	)
}

// String never shows the key.
func (w Webhook) String() string { return fmt.Sprint(w.LogValue()) }

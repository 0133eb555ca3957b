package api

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/gofiber/fiber/v2"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/oneoffice/provisioner/gateway/internal/auth"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// Rate-limit headers, sent on every call while RATE_LIMIT_RPS is on: the
// calls the partner may make at once, those left now, and the seconds until
// all of them are back.
const (
	HeaderRateLimitLimit     = "RateLimit-Limit"
	HeaderRateLimitRemaining = "RateLimit-Remaining"
	HeaderRateLimitReset     = "RateLimit-Reset"
)

const (
	// maxClients bounds the client addresses whose lookups are counted; past
	// it the least recent one starts afresh.
	maxClients = 65_536
	// errorLogEvery: with Redis down every call fails its check, so the
	// error is logged once per this period with the number left unlogged.
	errorLogEvery = 5 * time.Second
	// checkTimeout bounds one check in Redis, which answers in a millisecond
	// when it is up; past it the call goes through unchecked.
	checkTimeout = 250 * time.Millisecond
	// pauseAfterError: after a failed check the next ones, for this long, let
	// their calls through at once rather than each wait for Redis to fail.
	pauseAfterError = time.Second
)

// limiter holds the gateway's two rate limits: per partner, kept in Redis so
// that every gateway draws on one budget (SPEC section 6); and per client
// address, kept in this process, on the keys it must look up in the database.
type limiter struct {
	partners *partnerLimit // nil: RateLimit is 0
	clients  *clientLimit  // nil: ClientRateLimit is 0
}

func newLimiter(d Deps) *limiter {
	l := &limiter{}
	if d.RateLimit > 0 {
		if d.Redis == nil {
			panic("api: Deps.RateLimit needs Deps.Redis")
		}
		l.partners = &partnerLimit{redis: redis_rate.NewLimiter(d.Redis), limit: perSecond(d.RateLimit),
			errors: d.Metrics.rateLimitErrors, log: d.Log}
	}
	if d.ClientRateLimit > 0 {
		clients, _ := lru.New[string, *rate.Limiter](maxClients) // only a size <= 0 fails
		l.clients = &clientLimit{rate: rate.Limit(d.ClientRateLimit), burst: burst(d.ClientRateLimit), clients: clients}
	}
	return l
}

// burst is one second's worth of calls, at least one.
func burst(rps float64) int { return int(math.Max(1, math.Ceil(rps))) }

// perSecond is rps as redis_rate counts it, whole calls per period: a burst
// of one second's worth, and one call back every 1/rps seconds.
func perSecond(rps float64) redis_rate.Limit {
	b := burst(rps)
	return redis_rate.Limit{Rate: b, Burst: b, Period: time.Duration(float64(b) / rps * float64(time.Second))}
}

// limitedError refuses a call over a rate limit: the handler answers 429.
type limitedError struct{ retryAfter time.Duration }

func (e *limitedError) Error() string { return "rate limited" }

// setRetryAfter sets Retry-After to d in whole seconds, at least 1.
func setRetryAfter(c *fiber.Ctx, d time.Duration) {
	c.Set(fiber.HeaderRetryAfter, strconv.Itoa(max(1, int(math.Ceil(d.Seconds())))))
}

// admit returns the check of the client limit for c's address, nil when the
// limit is off. The address is the TCP peer's (c.IP()): behind a load
// balancer that is the balancer, which shares one budget among its clients.
func (l *limiter) admit(c *fiber.Ctx) func() error {
	if l.clients == nil {
		return nil
	}
	// A copy: the cache keeps the address beyond the call's buffers.
	return func() error { return l.clients.admit(strings.Clone(c.IP())) }
}

// clientLimit is a token bucket per client address, spent by each lookup of
// a key the gateway does not know: a caller making keys up costs the
// database at most this many queries a second.
type clientLimit struct {
	rate    rate.Limit
	burst   int
	clients *lru.Cache[string, *rate.Limiter]
}

func (l *clientLimit) admit(addr string) error {
	b, ok := l.clients.Get(addr)
	if !ok {
		b = rate.NewLimiter(l.rate, l.burst)
		if prev, found, _ := l.clients.PeekOrAdd(addr, b); found {
			b = prev
		}
	}
	r := b.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return &limitedError{retryAfter: d}
	}
	return nil
}

// quota is the partner limit's verdict on one call.
type quota struct {
	checked          bool // the limit is on and Redis answered: send the headers
	allowed          bool
	limit, remaining int
	reset, retry     time.Duration
}

// partner checks the partner's budget. Without an answer from Redis the call
// is let through: a Redis outage must not stop every partner's calls.
func (l *limiter) partner(ctx context.Context, partner int64) quota {
	if l.partners == nil {
		return quota{allowed: true}
	}
	return l.partners.allow(ctx, partner)
}

// partnerLimit is a GCRA bucket per partner in Redis (redis_rate), shared by
// every gateway on that Redis.
type partnerLimit struct {
	redis      *redis_rate.Limiter
	limit      redis_rate.Limit
	errors     prometheus.Counter
	log        *slog.Logger
	lastLog    atomic.Int64 // Unix nanoseconds of the last error logged
	suppressed atomic.Int64 // errors not logged since
	pausedTill atomic.Int64 // Unix nanoseconds: no check before, after an error
}

func (l *partnerLimit) allow(ctx context.Context, partner int64) quota {
	if time.Now().UnixNano() < l.pausedTill.Load() {
		l.errors.Inc()
		return quota{allowed: true}
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	res, err := l.redis.Allow(ctx, "partner:"+strconv.FormatInt(partner, 10), l.limit)
	if err != nil {
		l.pausedTill.Store(time.Now().Add(pauseAfterError).UnixNano())
		l.failed(ctx, err)
		return quota{allowed: true}
	}
	return quota{checked: true, allowed: res.Allowed > 0, limit: l.limit.Burst, remaining: res.Remaining,
		reset: res.ResetAfter, retry: res.RetryAfter}
}

func (l *partnerLimit) failed(ctx context.Context, err error) {
	l.errors.Inc()
	now, last := time.Now().UnixNano(), l.lastLog.Load()
	if now-last < int64(errorLogEvery) || !l.lastLog.CompareAndSwap(last, now) {
		l.suppressed.Add(1)
		return
	}
	l.log.WarnContext(ctx, "rate limit not checked, calls let through: Redis failed", "error", err,
		"errors_not_logged", l.suppressed.Swap(0), "log_every", errorLogEvery)
}

// setHeaders sends the partner's quota on the answer.
func (q quota) setHeaders(c *fiber.Ctx) {
	c.Set(HeaderRateLimitLimit, strconv.Itoa(q.limit))
	c.Set(HeaderRateLimitRemaining, strconv.Itoa(q.remaining))
	c.Set(HeaderRateLimitReset, strconv.Itoa(int(math.Ceil(q.reset.Seconds()))))
}

// keyCheckFailed answers a call whose key could be neither accepted nor
// refused: over the client limit (429), or the key store busy or down (503).
func (h *handler) keyCheckFailed(c *fiber.Ctx, err error) *protocol.Error {
	var limited *limitedError
	switch {
	case errors.As(err, &limited):
		h.Metrics.rateLimited.WithLabelValues(scopeClient).Inc()
		setRetryAfter(c, limited.retryAfter)
		return protocol.NewError(http.StatusTooManyRequests, protocol.CodeRateLimited, "",
			"too many calls with unknown API keys from this address; retry after the Retry-After seconds")
	case errors.Is(err, auth.ErrBusy):
		return unavailable("too many unknown API keys are being checked; retry later")
	default:
		return unavailable("the key store is unreachable")
	}
}

// limitPartner applies the partner's rate limit; nil lets the call go on.
func (h *handler) limitPartner(c *fiber.Ctx, partner int64) *protocol.Error {
	q := h.limits.partner(c.UserContext(), partner)
	if q.checked {
		q.setHeaders(c)
	}
	if q.allowed {
		return nil
	}
	h.Metrics.rateLimited.WithLabelValues(scopePartner).Inc()
	setRetryAfter(c, q.retry)
	return protocol.NewError(http.StatusTooManyRequests, protocol.CodeRateLimited, "",
		"too many calls for this partner; retry after the Retry-After seconds")
}

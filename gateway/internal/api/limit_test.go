package api

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/oneoffice/provisioner/gateway/internal/auth"
	"github.com/oneoffice/provisioner/shared/deps"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// Keys of the rate-limit tests: testKey and otherKey are partner 1's,
// partner2Key is partner 2's.
const (
	otherKey    = "oo_test_key_2"
	partner2Key = "oo_partner_2_key"
)

// slowRate lets one call through and the next only after 100 s: no test
// lasts that long, so which call is refused does not depend on timing.
const slowRate = 0.01

var testPartners = map[[32]byte]int64{auth.Hash(testKey): 1, auth.Hash(otherKey): 1, auth.Hash(partner2Key): 2}

// limitedApp is one gateway's API on rdb with the fake RPC; its metrics and
// log are returned for the checks.
func limitedApp(t *testing.T, d Deps) (*fiber.App, *Metrics, *logBuffer) {
	t.Helper()
	log := &logBuffer{}
	d.Auth = auth.NewCache(func(_ context.Context, h [32]byte) (int64, error) { return testPartners[h], nil })
	d.RPC = &echoRPC{}
	d.Log = slog.New(slog.NewTextHandler(log, nil))
	d.Metrics = NewMetrics(prometheus.NewRegistry())
	d.RPCTimeout = time.Second
	return New(d), d.Metrics, log
}

func redisClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	rdb, err := deps.OpenRedis(url, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func callWith(t *testing.T, app *fiber.App, key string) answer {
	t.Helper()
	return do(t, app, http.MethodPost, []byte(getOrder), "x-api-key", key)
}

// TestRateLimitIsSharedByGatewaysOnOneRedis: two gateways' handlers on one
// Redis draw on one budget per partner, whichever key of the partner calls.
func TestRateLimitIsSharedByGatewaysOnOneRedis(t *testing.T) {
	t.Parallel()
	rdb := redisClient(t, testenv.Redis(t))
	a, ma, _ := limitedApp(t, Deps{RateLimit: slowRate, Redis: rdb})
	b, mb, _ := limitedApp(t, Deps{RateLimit: slowRate, Redis: rdb})

	first := callWith(t, a, testKey)
	if first.status != http.StatusOK {
		t.Fatalf("first call: %d %s", first.status, first.body)
	}
	wantHeaders(t, "first call", first.header, "1", "0")
	for _, c := range []struct {
		name string
		app  *fiber.App
		key  string
	}{
		{"same key, other gateway", b, testKey},
		{"other key of the partner, other gateway", b, otherKey},
		{"same key, same gateway", a, testKey},
	} {
		r := callWith(t, c.app, c.key)
		if r.status != http.StatusTooManyRequests || r.code != protocol.CodeRateLimited {
			t.Fatalf("%s: %d %s, want 429 rate_limited", c.name, r.status, r.body)
		}
		if s, _ := strconv.Atoi(r.header.Get(fiber.HeaderRetryAfter)); s < 1 || s > 100 {
			t.Fatalf("%s: Retry-After %q, want 1 to 100 seconds", c.name, r.header.Get(fiber.HeaderRetryAfter))
		}
		wantHeaders(t, c.name, r.header, "1", "0")
	}
	if r := callWith(t, b, partner2Key); r.status != http.StatusOK {
		t.Fatalf("another partner: %d %s, want 200", r.status, r.body)
	}
	refused := func(m *Metrics) float64 { return testutil.ToFloat64(m.rateLimited.WithLabelValues(scopePartner)) }
	if refused(ma) != 1 || refused(mb) != 2 {
		t.Fatalf("refused by gateway a %v, b %v; want 1 and 2", refused(ma), refused(mb))
	}
}

// wantHeaders checks the RateLimit headers of an answer.
func wantHeaders(t *testing.T, name string, h http.Header, limit, remaining string) {
	t.Helper()
	reset, err := strconv.Atoi(h.Get(HeaderRateLimitReset))
	if h.Get(HeaderRateLimitLimit) != limit || h.Get(HeaderRateLimitRemaining) != remaining || err != nil || reset < 0 || reset > 100 {
		t.Fatalf("%s: RateLimit-Limit %q, -Remaining %q, -Reset %q; want %s, %s and 0 to 100 seconds", name,
			h.Get(HeaderRateLimitLimit), h.Get(HeaderRateLimitRemaining), h.Get(HeaderRateLimitReset), limit, remaining)
	}
}

// TestRateLimitFailsOpenWithoutRedis: with Redis unreachable every call goes
// through, without RateLimit headers, counted; the error is logged once.
func TestRateLimitFailsOpenWithoutRedis(t *testing.T) {
	t.Parallel()
	rdb := redisClient(t, "redis://"+testenv.FreeAddr(t)+"/0") // nothing listens there
	app, m, log := limitedApp(t, Deps{RateLimit: slowRate, Redis: rdb})
	for i := range 3 {
		r := callWith(t, app, testKey)
		if r.status != http.StatusOK {
			t.Fatalf("call %d with Redis down: %d %s, want 200", i, r.status, r.body)
		}
		if h := r.header.Get(HeaderRateLimitLimit); h != "" {
			t.Fatalf("call %d with Redis down: RateLimit-Limit %q, want none", i, h)
		}
	}
	if n := testutil.ToFloat64(m.rateLimitErrors); n != 3 {
		t.Fatalf("oneoffice_rate_limit_errors_total = %v, want 3", n)
	}
	if n := strings.Count(log.String(), "rate limit not checked"); n != 1 {
		t.Fatalf("the Redis error was logged %d times, want once:\n%s", n, log.String())
	}
}

// TestClientLimitHoldsBackLookupsOfUnknownKeys: past its budget a client
// address gets 429 for keys the gateway would have to look up, and keeps
// working with the keys it knows.
func TestClientLimitHoldsBackLookupsOfUnknownKeys(t *testing.T) {
	t.Parallel()
	app, m, _ := limitedApp(t, Deps{ClientRateLimit: slowRate})
	cases := []struct {
		name   string
		key    string
		status int
	}{
		{"a valid key, looked up", testKey, http.StatusOK},
		{"a made-up key, over the budget", "oo_bad_1", http.StatusTooManyRequests},
		{"the valid key, known", testKey, http.StatusOK},
		{"another made-up key", "oo_bad_2", http.StatusTooManyRequests},
	}
	for _, c := range cases {
		r := callWith(t, app, c.key)
		if r.status != c.status {
			t.Fatalf("%s: %d %s, want %d", c.name, r.status, r.body, c.status)
		}
		if c.status == http.StatusTooManyRequests && (r.code != protocol.CodeRateLimited || r.header.Get(fiber.HeaderRetryAfter) == "") {
			t.Fatalf("%s: %s, Retry-After %q; want rate_limited with Retry-After", c.name, r.body, r.header.Get(fiber.HeaderRetryAfter))
		}
		if h := r.header.Get(HeaderRateLimitLimit); h != "" {
			t.Fatalf("%s: RateLimit-Limit %q with RATE_LIMIT_RPS off", c.name, h)
		}
	}
	if n := testutil.ToFloat64(m.rateLimited.WithLabelValues(scopeClient)); n != 2 {
		t.Fatalf("client-limited calls %v, want 2", n)
	}

	// A made-up key answered 401 is remembered: asking again costs nothing
	// and answers 401, whatever the budget.
	app, _, _ = limitedApp(t, Deps{ClientRateLimit: slowRate})
	for i, want := range []int{http.StatusUnauthorized, http.StatusTooManyRequests, http.StatusUnauthorized} {
		key := "oo_bad_1"
		if i == 1 {
			key = "oo_bad_2"
		}
		if r := callWith(t, app, key); r.status != want {
			t.Fatalf("call %d (%s): %d %s, want %d", i, key, r.status, r.body, want)
		}
	}
}

// TestKeyStoreTooSlowIs503: a key lookup past its deadline is neither a yes
// nor a no: 503 unavailable, nothing sent.
func TestKeyStoreTooSlowIs503(t *testing.T) {
	t.Parallel()
	rpc := &echoRPC{}
	app := New(Deps{
		Auth: auth.NewCacheWith(func(ctx context.Context, _ [32]byte) (int64, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		}, auth.Options{LookupTimeout: 20 * time.Millisecond}),
		RPC:     rpc,
		Log:     slog.New(slog.DiscardHandler),
		Metrics: NewMetrics(prometheus.NewRegistry()),
	})
	r := callWith(t, app, testKey)
	if r.status != http.StatusServiceUnavailable || r.code != protocol.CodeUnavailable || rpc.calls.Load() != 0 {
		t.Fatalf("lookup past its deadline: %d %s, %d commands sent; want 503 unavailable and none", r.status, r.body, rpc.calls.Load())
	}
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

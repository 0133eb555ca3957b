package preauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// callTimeout bounds one call: the gateway answers a refused key at once and
// a getCustomer within its RPC deadline (4 s).
const callTimeout = 10 * time.Second

// caller sends getCustomer calls to the gateway over up to conns connections.
type caller struct {
	client *fasthttp.HostClient
	body   []byte
}

func newCaller(addr string, conns int, body []byte) *caller {
	return &caller{body: body, client: &fasthttp.HostClient{
		Addr: addr, MaxConns: conns,
		// Calls past the connections wait for one rather than fail: the
		// open loop's in-flight bound is what sheds load.
		MaxConnWaitTimeout: callTimeout,
		ReadTimeout:        callTimeout, WriteTimeout: callTimeout,
	}}
}

// call sends one call with key and returns its status (0: no answer) and
// latency.
func (c *caller) call(key string) (int, time.Duration) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + c.client.Addr + "/")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.Set("x-api-key", key)
	req.SetBody(c.body)
	start := time.Now()
	if err := c.client.DoTimeout(req, resp, callTimeout); err != nil {
		return 0, time.Since(start)
	}
	return resp.StatusCode(), time.Since(start)
}

// randomKey is a well-formed key that no partner has: each one costs the
// gateway a lookup unless something stops it first.
func randomKey() string {
	var b [32]byte
	rand.Read(b[:])
	return "oo_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// tally is what one stream of calls got.
type tally struct {
	mu        sync.Mutex
	statuses  map[int]int // 0: no answer (timeout, connection error)
	latencies []time.Duration
	shed      int // not sent: the in-flight bound was reached
	elapsed   time.Duration
}

func newTally() *tally { return &tally{statuses: map[int]int{}} }

func (t *tally) add(status int, d time.Duration) {
	t.mu.Lock()
	t.statuses[status]++
	t.latencies = append(t.latencies, d)
	t.mu.Unlock()
}

func (t *tally) sent() int { return len(t.latencies) }

// quantile of the latencies, q from 0 to 1.
func (t *tally) quantile(q float64) time.Duration {
	if len(t.latencies) == 0 {
		return 0
	}
	s := slices.Clone(t.latencies)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// openLoop calls fire at rate per second until ctx ends, whatever the answers
// take (open loop: a slow gateway does not slow the arrivals), with at most
// maxInFlight calls outstanding; calls past that are counted as shed.
func openLoop(ctx context.Context, rate float64, maxInFlight int, t *tally, fire func()) {
	slots := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start, due := time.Now(), 0
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			t.elapsed = time.Since(start)
			return
		case now := <-tick.C:
			for target := int(now.Sub(start).Seconds() * rate); due < target; due++ {
				select {
				case slots <- struct{}{}:
					wg.Go(func() { fire(); <-slots })
				default:
					t.mu.Lock()
					t.shed++
					t.mu.Unlock()
				}
			}
		}
	}
}

// phase runs the valid partner's probe, and the flood of random keys when
// flood > 0, for d, and returns their tallies.
func phase(ctx context.Context, cfg config, probe, flood *caller, key string, d time.Duration, floodRate float64) (good, bad *tally, err error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	good, bad = newTally(), newTally()
	var wg sync.WaitGroup
	if floodRate > 0 {
		wg.Go(func() {
			openLoop(ctx, floodRate, cfg.maxInFlight, bad, func() { bad.add(flood.call(randomKey())) })
		})
	}
	openLoop(ctx, cfg.probeRate, cfg.maxInFlight, good, func() { good.add(probe.call(key)) })
	wg.Wait()
	if err := context.Cause(ctx); !errors.Is(err, context.DeadlineExceeded) {
		return good, bad, err
	}
	return good, bad, nil
}

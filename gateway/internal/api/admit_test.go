package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/oneoffice/provisioner/gateway/internal/auth"
	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// slowRPC is a worker that answers a partner's commands only when the test
// lets it (the fault: workers slower than the calls arrive). sent lists the
// commands published, in order.
type slowRPC struct {
	mu    sync.Mutex
	sent  []*protocol.Command
	gates map[int64]chan struct{}
}

func newSlowRPC() *slowRPC { return &slowRPC{gates: make(map[int64]chan struct{})} }

func (r *slowRPC) gate(partner int64) chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	g, ok := r.gates[partner]
	if !ok {
		g = make(chan struct{}, 1000)
		r.gates[partner] = g
	}
	return g
}

func (r *slowRPC) Call(_ context.Context, cmd *protocol.Command, _ time.Duration) (protocol.Result, error) {
	r.mu.Lock()
	r.sent = append(r.sent, cmd)
	r.mu.Unlock()
	<-r.gate(cmd.Partner)
	return protocol.Result{Status: http.StatusOK, Body: cmd.Params}, nil
}

func (r *slowRPC) count(partner int64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.sent {
		if c.Partner == partner {
			n++
		}
	}
	return n
}

// answer lets n of partner's commands finish.
func (r *slowRPC) answer(partner int64, n int) {
	for range n {
		r.gate(partner) <- struct{}{}
	}
}

// overloadApp is the API with admission control, partners 1 and 2 (keys
// "k1", "k2") and the real Redis as idempotency store.
func overloadApp(t *testing.T, a Admission) (*fiber.App, *slowRPC, *idempotency.Store, *Metrics) {
	t.Helper()
	idem := idempotency.NewStore(redisClient(t, testenv.Redis(t)), time.Hour)
	rpc := newSlowRPC()
	m := NewMetrics(prometheus.NewRegistry())
	app := New(Deps{
		Idem: idem,
		Auth: auth.NewCache(func(_ context.Context, h [32]byte) (int64, error) {
			for p := int64(1); p <= 2; p++ {
				if h == auth.Hash("k"+strconv.FormatInt(p, 10)) {
					return p, nil
				}
			}
			return 0, nil
		}),
		RPC: rpc, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: m,
		RPCTimeout: time.Minute, Admission: a,
	})
	return app, rpc, idem, m
}

func createCustomerBody(id string) []byte {
	return []byte(`{"method":"createCustomer","params":{"id":"` + id + `","name":"N","admin":{"email":"a@example.com"}}}`)
}

// callAs makes a createCustomer call as partner with an Idempotency-Key.
func callAs(t *testing.T, app *fiber.App, partner int64, id string) answer {
	t.Helper()
	p := strconv.FormatInt(partner, 10)
	return do(t, app, http.MethodPost, createCustomerBody(id), "x-api-key", "k"+p, "Idempotency-Key", "key-"+id)
}

// waitSent waits until partner's commands number n.
func waitSent(t *testing.T, rpc *slowRPC, partner int64, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); rpc.count(partner) != n; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("partner %d: %d commands sent, want %d", partner, rpc.count(partner), n)
		}
	}
}

// SPEC section 5: past the limit a call is refused at once, 503 overloaded
// with Retry-After, before its key is taken or its command sent; once calls
// finish, calls are let in again.
func TestOverloadIsRefusedBeforeTheKeyAndTheQueue(t *testing.T) {
	t.Parallel()
	app, rpc, idem, m := overloadApp(t, Admission{MaxInFlight: 2, MinInFlight: 2})
	var wg sync.WaitGroup
	answers := make([]answer, 2)
	for i := range answers {
		p := int64(i + 1)
		wg.Go(func() { answers[i] = callAs(t, app, p, "C"+strconv.Itoa(i)) })
		waitSent(t, rpc, p, 1)
	}
	for _, p := range []int64{1, 2} {
		a := callAs(t, app, p, "OVER")
		if a.status != http.StatusServiceUnavailable || a.code != protocol.CodeOverloaded || a.header.Get("Retry-After") != "1" {
			t.Fatalf("partner %d over the limit: %d %s, Retry-After %q", p, a.status, a.body, a.header.Get("Retry-After"))
		}
		// Nothing held: the key is free for the retry.
		key := idempotency.Key(p, "key-OVER", false)
		got, _, err := idem.Acquire(context.Background(), key, idempotency.NewToken(), "fp")
		if err != nil || got != idempotency.New {
			t.Fatalf("partner %d: the refused call's key is %v (%v), want it free", p, got, err)
		}
		if err := idem.Release(context.Background(), key, "", "fp"); err != nil {
			t.Log(err)
		}
	}
	if n := rpc.count(1) + rpc.count(2); n != 2 {
		t.Fatalf("%d commands sent, want the 2 admitted only", n)
	}
	if got := testutil.ToFloat64(m.overloadRefusals.WithLabelValues(refusedLimit)); got != 2 {
		t.Fatalf("refusals{reason=limit} = %v, want 2", got)
	}
	rpc.answer(1, 1)
	rpc.answer(2, 1)
	wg.Wait()
	for i, a := range answers {
		if a.status != http.StatusOK {
			t.Fatalf("admitted call %d: %d %s", i, a.status, a.body)
		}
	}
	rpc.answer(1, 1)
	if a := callAs(t, app, 1, "AFTER"); a.status != http.StatusOK {
		t.Fatalf("after the calls finished: %d %s", a.status, a.body)
	}
}

// One partner's burst cannot take every slot: a tenth is kept, another
// partner gets in, and as the burst's calls finish the other partner takes
// their places up to its share while the bursting partner is refused.
func TestOnePartnersBurstDoesNotStarveAnother(t *testing.T) {
	t.Parallel()
	app, rpc, _, m := overloadApp(t, Admission{MaxInFlight: 10, MinInFlight: 10})
	var wg sync.WaitGroup
	var mu sync.Mutex
	status := map[int]int{}
	call := func(p int64, id string) {
		wg.Go(func() {
			a := callAs(t, app, p, id)
			mu.Lock()
			status[a.status]++
			mu.Unlock()
		})
	}
	for i := range 20 {
		call(1, "B"+strconv.Itoa(i))
	}
	// 9 in, 11 refused: the tenth slot is kept.
	waitSent(t, rpc, 1, 9)
	for deadline := time.Now().Add(30 * time.Second); testutil.ToFloat64(m.overloadRefusals.WithLabelValues(refusedShare)) < 11; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the burst's refusals did not come")
		}
	}
	call(2, "P2-0")
	waitSent(t, rpc, 2, 1)
	// Full: partner 2's second call is refused on the limit.
	if a := callAs(t, app, 2, "P2-FULL"); a.status != http.StatusServiceUnavailable || a.code != protocol.CodeOverloaded {
		t.Fatalf("over the limit: %d %s", a.status, a.body)
	}
	// As partner 1's calls finish, partner 2 gets their slots up to its
	// share (5), and partner 1, over its share, does not.
	for i := range 4 {
		rpc.answer(1, 1)
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(2 * time.Millisecond) {
			mu.Lock()
			done := status[http.StatusOK]
			mu.Unlock()
			if done == i+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of partner 1's calls answered, want %d", done, i+1)
			}
		}
		if a := callAs(t, app, 1, "B-again-"+strconv.Itoa(i)); a.status != http.StatusServiceUnavailable {
			t.Fatalf("partner 1 over its share: %d %s", a.status, a.body)
		}
		call(2, "P2-"+strconv.Itoa(i+1))
		waitSent(t, rpc, 2, i+2)
	}
	if n := rpc.count(1); n != 9 {
		t.Fatalf("partner 1 sent %d, want its 9", n)
	}
	rpc.answer(1, 100)
	rpc.answer(2, 100)
	wg.Wait()
	if status[http.StatusOK] != 9+5 || status[http.StatusServiceUnavailable] != 11 {
		t.Fatalf("answers by status %v, want 14 200 and 11 503", status)
	}
}

// drain gives back every slot, unsampled.
func (a *admitter) drain() {
	for len(a.held) > 0 {
		for p := range a.held {
			a.release(p, false, 0, false)
		}
	}
}

// fill takes slots for partner until one is refused, and returns how many
// it took.
func (a *admitter) fill(partner int64) int {
	n := 0
	for {
		if _, ok := a.acquire(partner); !ok {
			return n
		}
		n++
	}
}

// The limit adapts on the latency calls see while it is in use: a limit's
// worth of calls of which more than a tenth were slower than the target, or
// answered 202, cut it by a tenth, down to the minimum; calls within the
// target raise it back to the maximum. Latencies are given, not timed.
func TestAdmissionLimitFollowsLatency(t *testing.T) {
	t.Parallel()
	m := NewMetrics(prometheus.NewRegistry())
	a := newAdmitter(Admission{MaxInFlight: 40, MinInFlight: 10, TargetLatency: 100 * time.Millisecond}, m)
	const p1, p2 = 1, 2
	if got := a.fill(p1); got != 36 { // a tenth kept for other partners
		t.Fatalf("one partner took %d of 40, want 36", got)
	}
	if got := a.fill(p2); got != 4 {
		t.Fatalf("the second partner took %d, want the 4 kept", got)
	}
	// A tenth of a window slow: no cut.
	for i := range 40 {
		d := 10 * time.Millisecond
		if i%10 == 0 {
			d = 150 * time.Millisecond
		}
		a.release(p2, true, d, false)
		a.acquire(p2)
	}
	if a.limit < 40 {
		t.Fatalf("limit %v after a window with a tenth slow, want it uncut", a.limit)
	}
	a.limit, a.window, a.slow = 40, 0, 0
	// More than a tenth slow while the limit is in use: one cut per window,
	// 40 -> 36.
	for i := range 40 {
		d := 10 * time.Millisecond
		if i%8 == 0 {
			d = 150 * time.Millisecond
		}
		a.release(p2, true, d, false)
		a.acquire(p2)
	}
	if a.limit != 36 || testutil.ToFloat64(m.admissionLimit) != 36 {
		t.Fatalf("limit %v after a limit's worth of slow calls, want 36", a.limit)
	}
	a.drain()
	// A call not sent to a worker (answered before, or the broker's 503)
	// says nothing of latency; nor does a slow call with few others in
	// flight, which no queueing slowed.
	for range 1000 {
		a.acquire(p1)
		a.release(p1, false, time.Hour, true)
		a.acquire(p1)
		a.release(p1, true, time.Hour, true)
	}
	if a.limit != 36 {
		t.Fatalf("unsampled calls or an unused limit moved it to %v", a.limit)
	}
	// Calls answered 202 while it is in use keep cutting it, down to the
	// minimum.
	a.fill(p1)
	for range 1000 {
		a.release(p1, true, 0, true)
		a.fill(p1)
	}
	if a.limit != 10 {
		t.Fatalf("limit %v after many 202s, want the minimum 10", a.limit)
	}
	a.drain()
	if got := a.fill(p1); got != 9 {
		t.Fatalf("one partner took %d of 10, want 9", got)
	}
	// Fast answers while the limit is in use raise it, by one per limit's
	// worth of calls, up to the maximum.
	for range 5000 {
		a.release(p1, true, 10*time.Millisecond, false)
		a.fill(p1)
	}
	if a.limit != 40 {
		t.Fatalf("limit %v after many fast calls in use, want the maximum 40", a.limit)
	}
	// Fast answers while it is far from used do not raise it.
	b := newAdmitter(Admission{MaxInFlight: 40, MinInFlight: 10, TargetLatency: 100 * time.Millisecond}, NewMetrics(prometheus.NewRegistry()))
	b.limit = 20
	for range 1000 {
		b.acquire(p1)
		b.release(p1, true, time.Millisecond, false)
	}
	if b.limit != 20 {
		t.Fatalf("limit %v raised by a lone caller, want 20", b.limit)
	}
}

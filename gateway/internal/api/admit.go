package api

import (
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// Admission control (SPEC section 5). Past the calls this gateway can have
// waiting for a worker, a call is refused at once, 503 overloaded with
// Retry-After, before its idempotency key is taken or its command sent:
// nothing is held, nothing enqueued, and the partner's retry lands later
// instead of piling up behind the calls already queued.
//
// The limit adapts between MinInFlight and MaxInFlight on the latency the
// calls see while it is in use (at least half of it taken), additive
// increase and multiplicative decrease as TCP's congestion window: a call
// answered within TargetLatency raises it by 1/limit (one per limit's worth
// of calls); a window of a limit's worth of calls of which more than a tenth
// were slower, or 202 (no reply before RPC_TIMEOUT), cuts it by a tenth. The
// limit so keeps the 90th percentile near the target: a slow call now and
// then (a checkpoint, a busy neighbour) does not cut it. The signal is
// the latency partners see against a target below RPC_TIMEOUT rather than a
// gradient of short to long average latency (Netflix's Gradient2, as in
// go-concurrency-limits): the methods differ severalfold in their own cost,
// so the averages move with the mix, not only with queueing; and that
// library's partitions are fixed in number and share, where fairness here is
// among whichever partners are calling now.
//
// Fairness: a partner holding its share of the limit (the limit divided by
// the partners with calls in flight, itself included, and never more than
// nine tenths of it) may take more only while a tenth of the limit is left
// free. That tenth is for partners under their share: one partner's burst
// never holds every slot, a partner arriving finds one, and as the burst's
// calls finish the others take their places.

// Admission configures admission control; MaxInFlight 0 turns it off.
type Admission struct {
	MaxInFlight   int           // the most calls let in at once
	MinInFlight   int           // the limit never goes below
	TargetLatency time.Duration // calls slower than this cut the limit
}

// RetryAfterOverloaded is the Retry-After of a 503 overloaded.
const RetryAfterOverloaded = time.Second

// Reasons of oneoffice_gateway_overload_refusals_total.
const (
	refusedLimit = "limit"         // the gateway's limit was reached
	refusedShare = "partner_share" // the partner held its share and the rest is kept for others
)

// admitter counts the calls in flight against the limit, overall and per
// partner.
type admitter struct {
	min, max float64
	target   time.Duration

	mu       sync.Mutex
	limit    float64
	inFlight int
	held     map[int64]int // calls in flight per partner; a partner with none is absent
	window   int           // calls sampled in the current window
	slow     int           // of which slower than the target, or 202

	refusals *prometheus.CounterVec
	gauge    prometheus.Gauge
}

func newAdmitter(a Admission, m *Metrics) *admitter {
	if a.MaxInFlight <= 0 {
		return nil
	}
	lo := float64(max(1, min(a.MinInFlight, a.MaxInFlight)))
	ad := &admitter{min: lo, max: float64(a.MaxInFlight), target: a.TargetLatency, limit: float64(a.MaxInFlight),
		held: make(map[int64]int), refusals: m.overloadRefusals, gauge: m.admissionLimit}
	ad.gauge.Set(ad.limit)
	return ad
}

// acquire takes a slot for a call of partner, or returns the reason it is
// refused.
func (a *admitter) acquire(partner int64) (reason string, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	limit := int(a.limit)
	if a.inFlight >= limit {
		return refusedLimit, false
	}
	held := a.held[partner]
	active := len(a.held)
	if held == 0 {
		active++
	}
	reserve := max(1, limit/10)
	share := max(1, min(limit/active, limit-reserve))
	if held >= share && a.inFlight >= limit-reserve {
		return refusedShare, false
	}
	a.inFlight++
	a.held[partner] = held + 1
	return "", true
}

// release gives back the slot of a call of partner. sampled tells whether
// the call went to a worker, elapsed how long that took, and dropped that
// it was answered 202 for want of a reply.
func (a *admitter) release(partner int64, sampled bool, elapsed time.Duration, dropped bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inFlight--
	if a.held[partner]--; a.held[partner] <= 0 {
		delete(a.held, partner)
	}
	if !sampled {
		return
	}
	// Only while the limit is in use does latency tell of it: a slow call
	// with few others in flight was not slowed by queueing, and a limit far
	// above the calls made is not raised further.
	if float64(a.inFlight+1) < a.limit/2 {
		return
	}
	a.window++
	if dropped || (a.target > 0 && elapsed > a.target) {
		a.slow++
	} else {
		a.limit = math.Min(a.max, a.limit+1/a.limit)
	}
	// A window is a limit's worth of calls; more than a tenth of them slow
	// (their 90th percentile over the target) cuts the limit once.
	if float64(a.window) >= a.limit {
		if a.slow*10 > a.window {
			a.limit = math.Max(a.min, a.limit*0.9)
		}
		a.window, a.slow = 0, 0
	}
	a.gauge.Set(a.limit)
}

// overloaded is the refusal of a call past the limit.
func overloaded(c *fiber.Ctx) *protocol.Error {
	setRetryAfter(c, RetryAfterOverloaded)
	return protocol.NewError(http.StatusServiceUnavailable, protocol.CodeOverloaded, "",
		"more calls are in flight than the service can answer in time; nothing was done, retry after the Retry-After seconds")
}

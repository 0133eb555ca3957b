// Package webhooks is the worker's dispatcher of webhook events (SPEC section
// 6): it takes the due events of the outbox (migration 00006) and posts them,
// signed, to their partner's endpoint, retrying with back-off for
// WEBHOOK_RETRY_FOR. Any number of dispatchers run side by side, one in each
// worker: an event is leased by one of them at a time, and an event whose
// dispatcher died is taken again when its lease runs out, with the same
// webhook-id, so nothing is lost and a duplicate is recognisable.
package webhooks

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/shared/webhook"
)

// leaseMargin is how much longer than one delivery's time-out an event stays
// leased: long enough to record the answer after it came.
const leaseMargin = 10 * time.Second

// warnEvery bounds the warnings of the dispatching loop to one a minute.
const warnEvery = time.Minute

// Config is the dispatcher's.
type Config struct {
	// DatabaseURL is for the connection that listens for new events.
	DatabaseURL string
	// Timeout bounds one delivery; default 5s.
	Timeout time.Duration
	// Concurrency is the deliveries at once; default 16.
	Concurrency int
	// EndpointConcurrency is the deliveries at once to one endpoint; default 4.
	EndpointConcurrency int
	// Schedule is the retries' back-off.
	Schedule Schedule
	// PollInterval is how often due events are looked for without a
	// notification; default 1s.
	PollInterval time.Duration
	// Retention is how long delivered and failed events are kept; default 30 days.
	Retention time.Duration
	// Policy says which endpoints may be called.
	Policy webhook.Policy
}

// Dispatcher delivers the outbox's events.
type Dispatcher struct {
	db     *pgxpool.Pool
	sealer *webhook.Sealer
	client *http.Client
	cfg    Config
	lease  time.Duration
	log    *slog.Logger
	m      *Metrics
	now    func() time.Time

	wake chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	busy map[int64]int // deliveries in flight per partner
	n    int           // deliveries in flight
}

// New returns a dispatcher; sealer opens the endpoints' secrets.
func New(db *pgxpool.Pool, sealer *webhook.Sealer, cfg Config, log *slog.Logger, m *Metrics) *Dispatcher {
	cfg.Timeout = cmp.Or(cfg.Timeout, 5*time.Second)
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 16)
	cfg.EndpointConcurrency = cmp.Or(cfg.EndpointConcurrency, 4)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, time.Second)
	cfg.Retention = cmp.Or(cfg.Retention, 30*24*time.Hour)
	return &Dispatcher{db: db, sealer: sealer, client: cfg.Policy.Client(cfg.Timeout), cfg: cfg,
		lease: cfg.Timeout + leaseMargin, log: log, m: m, now: time.Now,
		wake: make(chan struct{}, 1), busy: map[int64]int{}}
}

// Run delivers until ctx ends, then waits for the deliveries in flight (each
// bounded by the time-out) and returns.
func (d *Dispatcher) Run(ctx context.Context) {
	go d.listen(ctx)
	go d.watch(ctx)
	go d.prune(ctx)
	t := time.NewTicker(d.cfg.PollInterval)
	defer t.Stop()
	var warned time.Time
	for {
		more, err := d.dispatch(ctx)
		if err != nil && ctx.Err() == nil && time.Since(warned) >= warnEvery {
			warned = time.Now() // an outage of the database would repeat it every poll
			d.log.WarnContext(ctx, "taking webhook events failed", "error", err)
		}
		if more {
			continue
		}
		select {
		case <-ctx.Done():
			d.wg.Wait()
			return
		case <-d.wake:
		case <-t.C:
		}
	}
}

// nudge wakes the loop, without blocking.
func (d *Dispatcher) nudge() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// dispatch claims as many due events as there are free slots and starts
// their deliveries; more reports that it filled every slot it had, so there
// may be more due.
func (d *Dispatcher) dispatch(ctx context.Context) (more bool, err error) {
	d.mu.Lock()
	free := d.cfg.Concurrency - d.n
	busy := []int64{} // not nil: NULL would match no partner
	for p, n := range d.busy {
		if n >= d.cfg.EndpointConcurrency {
			busy = append(busy, p)
		}
	}
	d.mu.Unlock()
	if free <= 0 || ctx.Err() != nil {
		return false, nil
	}
	events, err := d.claim(ctx, free, busy)
	if err != nil {
		return false, err
	}
	var spare []int64
	d.mu.Lock()
	for _, e := range events {
		if d.busy[e.partner] >= d.cfg.EndpointConcurrency {
			spare = append(spare, e.id) // beyond the endpoint's share
			continue
		}
		d.busy[e.partner]++
		d.n++
		d.wg.Add(1)
		go d.deliver(e)
	}
	d.m.inFlight.Set(float64(d.n))
	d.mu.Unlock()
	if err := d.release(ctx, spare); err != nil {
		return false, err
	}
	return len(events) == free && len(spare) == 0, nil
}

// deliver makes one attempt of e and records its outcome. It runs to its
// end even while the worker stops: it is bounded by the time-out.
func (d *Dispatcher) deliver(e event) {
	defer func() {
		d.mu.Lock()
		if d.busy[e.partner]--; d.busy[e.partner] <= 0 {
			delete(d.busy, e.partner)
		}
		d.n--
		d.m.inFlight.Set(float64(d.n))
		d.mu.Unlock()
		d.wg.Done()
		d.nudge()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), d.lease)
	defer cancel()
	start := d.now()
	status, err := d.send(ctx, e)
	if err := d.record(ctx, e, start, d.now().Sub(start), status, err); err != nil {
		d.log.WarnContext(ctx, "recording a webhook attempt failed", "event", webhook.MessageID(e.eventID), "error", err)
	}
	if err := d.settle(ctx, e, status, err); err != nil {
		d.log.WarnContext(ctx, "recording a webhook delivery failed; the event is tried again when its lease ends",
			"event", webhook.MessageID(e.eventID), "error", err)
	}
}

// send posts e to its endpoint.
func (d *Dispatcher) send(ctx context.Context, e event) (int, error) {
	secret, err := d.sealer.Open(e.partner, e.sealed)
	if err != nil {
		return 0, err
	}
	msg := webhook.Message{ID: webhook.MessageID(e.eventID), Body: []byte(e.body)}
	return webhook.Send(ctx, d.client, e.url, secret, msg, d.now())
}

// settle records the outcome of one attempt, counts it and logs it.
func (d *Dispatcher) settle(ctx context.Context, e event, status int, err error) error {
	id := webhook.MessageID(e.eventID)
	outcome := classify(status, err)
	d.m.deliveries.WithLabelValues(outcome).Inc()
	log := d.log.With("event", id, "partner", e.partner, "attempt", e.attempt, "outcome", outcome, "status", status)
	switch outcome {
	case outcomeDelivered:
		d.m.latency.Observe(d.now().Sub(e.occurredAt).Seconds())
		log.DebugContext(ctx, "webhook delivered")
		return d.delivered(ctx, e, status)
	case outcomeGone:
		d.m.failed.WithLabelValues(reasonGone).Inc()
		log.WarnContext(ctx, "webhook endpoint answered 410 Gone: disabling it")
		return d.gone(ctx, e)
	}
	reason := http.StatusText(status)
	if err != nil {
		reason = err.Error()
	}
	next, ok := d.cfg.Schedule.Next(e.retryFrom, d.now(), e.attempt)
	if !ok {
		d.m.failed.WithLabelValues(reasonExhausted).Inc()
		log.WarnContext(ctx, "webhook event failed: still undelivered at the end of its retries", "reason", reason)
		next = time.Time{}
	} else {
		log.InfoContext(ctx, "webhook delivery failed; retrying", "reason", reason, "next_attempt", next)
	}
	return d.retry(ctx, e, status, reason, next)
}

// classify names the outcome of one attempt.
func classify(status int, err error) string {
	var timeout interface{ Timeout() bool }
	switch {
	case errors.Is(err, webhook.ErrRefused):
		return outcomeRefused
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &timeout) && timeout.Timeout()):
		return outcomeTimeout
	case err != nil:
		return outcomeUnreachable
	case status >= 200 && status < 300:
		return outcomeDelivered
	case status == http.StatusGone:
		return outcomeGone
	}
	return outcomeRejected
}

package api

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel/trace"

	"github.com/oneoffice/provisioner/gateway/internal/auth"
	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/tracing"
)

// Metrics of the API. Label values are bounded: method is one of
// the registry's (protocol.Names) or "unknown", code an HTTP status.
type Metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	inFlight    prometheus.Gauge
	calls       atomic.Int64 // inFlight's value, for Busy
	pending     *prometheus.CounterVec
	idempotency *prometheus.CounterVec
	authFail    *prometheus.CounterVec
	rateLimited *prometheus.CounterVec
	panics      prometheus.Counter

	overloadRefusals *prometheus.CounterVec
	admissionLimit   prometheus.Gauge

	rateLimitErrors prometheus.Counter
	keyLookups      map[auth.Result]prometheus.Counter // every result, resolved once: counted on every call

	// The children counted on every call, resolved once rather than by
	// their labels on each: durations by method, requests by method and
	// status (filled as statuses are met), idempotency outcomes.
	durations map[string]prometheus.Observer
	answered  sync.Map              // answeredKey -> prometheus.Counter
	outcomes  [4]prometheus.Counter // by idempotency.Outcome
}

// answeredKey names a child of oneoffice_http_requests_total.
type answeredKey struct {
	method string
	status int
}

// Latency buckets fitted to this service: a call is a few milliseconds through
// broker, worker and database, and 4 s is the 202 deadline.
var latencyBuckets = []float64{.001, .002, .003, .004, .005, .0075, .01, .015, .02, .03, .05, .075, .1, .25, .5, 1, 2, 4, 5}

// NewMetrics registers the API metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffice_http_requests_total",
			Help: "API calls answered, by API method and HTTP status code.",
		}, []string{"method", "code"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "oneoffice_http_request_duration_seconds",
			Help:    "Time to answer an API call, by API method.",
			Buckets: latencyBuckets,
		}, []string{"method"}),
		inFlight: f.NewGauge(prometheus.GaugeOpts{
			Name: "oneoffice_http_in_flight_requests",
			Help: "API calls being answered now.",
		}),
		pending: f.NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffice_gateway_pending_total",
			Help: "Calls answered 202 pending, by API method: no worker replied before RPC_TIMEOUT, or the publish was not confirmed by then.",
		}, []string{"method"}),
		idempotency: f.NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffice_idempotency_outcomes_total",
			Help: "Idempotency checks by outcome (new, replayed, in_progress, mismatch).",
		}, []string{"outcome"}),
		authFail: f.NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffice_auth_failures_total",
			Help: "Calls refused 401, by reason (missing, invalid).",
		}, []string{"reason"}),
		rateLimited: f.NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffice_rate_limited_total",
			Help: "Calls refused 429 rate_limited, by scope: partner (RATE_LIMIT_RPS, shared by all gateways) or client (CLIENT_RATE_LIMIT_RPS, lookups of unknown keys per client address).",
		}, []string{"scope"}),
		rateLimitErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "oneoffice_rate_limit_errors_total",
			Help: "Calls let through without their partner rate-limit check: Redis failed on it, or on a check less than a second before.",
		}),
		panics: f.NewCounter(prometheus.CounterOpts{
			Name: "oneoffice_http_panics_total",
			Help: "API calls whose handling panicked; each was answered 500 internal and the process went on.",
		}),
		keyLookups: make(map[auth.Result]prometheus.Counter),
		durations:  make(map[string]prometheus.Observer),
		overloadRefusals: f.NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffice_gateway_overload_refusals_total",
			Help: "Calls refused 503 overloaded by admission control, by reason: limit (ADMISSION_MAX_IN_FLIGHT, adapted to the latency seen) or partner_share (the partner held its share while others called).",
		}, []string{"reason"}),
		admissionLimit: f.NewGauge(prometheus.GaugeOpts{
			Name: "oneoffice_gateway_admission_limit",
			Help: "Calls this gateway lets in at once now: between ADMISSION_MIN_IN_FLIGHT and ADMISSION_MAX_IN_FLIGHT, cut when calls are slower than ADMISSION_TARGET_LATENCY (0 while off).",
		}),
	}
	lookups := f.NewCounterVec(prometheus.CounterOpts{
		Name: "oneoffice_auth_key_lookups_total",
		Help: "API key checks by result: hit, negative_hit (answered by the key cache), shared (waited for the same key's lookup), miss, refresh (database lookups that answered), refused (no lookup slot before the deadline), timeout, error.",
	}, []string{"result"})
	for _, method := range append([]string{"unknown"}, protocol.Names()...) {
		m.durations[method] = m.duration.WithLabelValues(method)
		m.requests.WithLabelValues(method, "200")
		m.pending.WithLabelValues(method)
	}
	for _, o := range []idempotency.Outcome{idempotency.New, idempotency.InProgress, idempotency.Replay, idempotency.Mismatch} {
		m.outcomes[o] = m.idempotency.WithLabelValues(o.String())
	}
	m.authFail.WithLabelValues("missing")
	m.authFail.WithLabelValues("invalid")
	m.rateLimited.WithLabelValues(scopePartner)
	m.rateLimited.WithLabelValues(scopeClient)
	m.overloadRefusals.WithLabelValues(refusedLimit)
	m.overloadRefusals.WithLabelValues(refusedShare)
	for _, r := range auth.Results() {
		m.keyLookups[r] = lookups.WithLabelValues(string(r))
	}
	return m
}

// Scopes of oneoffice_rate_limited_total.
const (
	scopePartner = "partner"
	scopeClient  = "client"
)

// KeyLookup counts one result of the key cache (auth.Options.Observe).
func (m *Metrics) KeyLookup(r auth.Result) { m.keyLookups[r].Inc() }

// observe counts and times a call; a sampled call's trace id is the
// duration's exemplar.
func (m *Metrics) observe(method string, status int, seconds float64, span trace.Span) {
	m.count(method, status)
	d, ok := m.durations[method]
	if !ok {
		d = m.duration.WithLabelValues(method)
	}
	tracing.Observe(d, seconds, span)
}

// count counts a call whose duration is unknown (refused before the handler).
func (m *Metrics) count(method string, status int) {
	k := answeredKey{method, status}
	if c, ok := m.answered.Load(k); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c := m.requests.WithLabelValues(method, strconv.Itoa(status))
	if _, known := m.durations[method]; known { // bounded: registered methods by status codes
		m.answered.Store(k, c)
	}
	c.Inc()
}

// idempotencyOutcome counts one outcome of taking a key.
func (m *Metrics) idempotencyOutcome(o idempotency.Outcome) {
	if int(o) < len(m.outcomes) {
		m.outcomes[o].Inc()
		return
	}
	m.idempotency.WithLabelValues(o.String()).Inc()
}

// Busy reports whether a call is being answered now. A drain that timed out
// while none was cut short only closed connections that had sent no request.
func (m *Metrics) Busy() bool { return m.calls.Load() > 0 }

package webhooks

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Outcomes of one delivery attempt: the values of the outcome label.
const (
	outcomeDelivered   = "delivered"   // a 2xx
	outcomeRejected    = "rejected"    // another status, a 3xx included: retried
	outcomeGone        = "gone"        // 410: the endpoint is disabled
	outcomeTimeout     = "timeout"     // no answer within WEBHOOK_TIMEOUT: retried
	outcomeUnreachable = "unreachable" // the connection failed: retried
	outcomeRefused     = "refused"     // the address is not allowed by the policy: retried
)

// Reasons an event is failed: the values of the reason label.
const (
	reasonExhausted = "retries_exhausted" // still undelivered at the end of WEBHOOK_RETRY_FOR
	reasonGone      = "endpoint_gone"     // the endpoint answered 410
)

// Metrics are the dispatcher's.
type Metrics struct {
	deliveries *prometheus.CounterVec
	failed     *prometheus.CounterVec
	latency    prometheus.Histogram
	oldest     prometheus.Gauge
	inFlight   prometheus.Gauge
	pruned     prometheus.Counter
}

// NewMetrics registers the dispatcher's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		deliveries: f.NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffice_webhook_deliveries_total",
			Help: "Webhook delivery attempts by outcome (delivered, rejected, gone, timeout, unreachable, refused).",
		}, []string{"outcome"}),
		failed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffice_webhook_events_failed_total",
			Help: "Webhook events given up, by reason (retries_exhausted, endpoint_gone); kept for replay.",
		}, []string{"reason"}),
		latency: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "oneoffice_webhook_delivery_latency_seconds",
			Help:    "From an event's occurredAt (its command's completion) to its endpoint's 2xx.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400},
		}),
		oldest: f.NewGauge(prometheus.GaugeOpts{
			Name: "oneoffice_webhook_oldest_undelivered_seconds",
			Help: "Age of the oldest pending webhook event, 0 when none (every dispatcher reports the same).",
		}),
		inFlight: f.NewGauge(prometheus.GaugeOpts{
			Name: "oneoffice_webhook_deliveries_in_flight",
			Help: "Webhook deliveries this worker is making now.",
		}),
		pruned: f.NewCounter(prometheus.CounterOpts{
			Name: "oneoffice_webhook_events_pruned_total",
			Help: "Delivered and failed webhook events deleted after WEBHOOK_RETENTION.",
		}),
	}
	for _, o := range []string{outcomeDelivered, outcomeRejected, outcomeGone, outcomeTimeout, outcomeUnreachable, outcomeRefused} {
		m.deliveries.WithLabelValues(o)
	}
	for _, r := range []string{reasonExhausted, reasonGone} {
		m.failed.WithLabelValues(r)
	}
	return m
}

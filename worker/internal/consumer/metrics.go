package consumer

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// Outcomes of a command, the values of the outcome label.
const (
	OutcomeOK           = "ok"            // 2xx result
	OutcomeRejected     = "rejected"      // 4xx result: the API refused it
	OutcomeDeadLettered = "dead_lettered" // undecodable, invalid, panicked or failed permanently
	OutcomeRequeued     = "requeued"      // given back to the broker at shutdown, run or not
)

// Metrics of one worker process.
type Metrics struct {
	// methods holds the series of each registered method; commands and
	// duration are their vectors, read by tests.
	methods      map[string]*methodMetrics
	commands     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	inFlight     prometheus.Gauge
	concurrency  prometheus.Gauge
	redeliveries prometheus.Counter
	deadLettered *prometheus.CounterVec
	retries      *prometheus.CounterVec
	dbErrors     prometheus.Counter
	connected    prometheus.Gauge
}

// NewMetrics registers the worker's metrics on reg.
func NewMetrics(reg prometheus.Registerer, concurrency int) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		commands: f.NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffice_worker_commands_total",
			Help: "Commands handled, by API method and outcome (ok, rejected, dead_lettered, requeued).",
		}, []string{"method", "outcome"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "oneoffice_worker_command_duration_seconds",
			Help:    "Time from delivery to settlement (ack, requeue or dead-letter) of a command, by API method.",
			Buckets: []float64{.001, .002, .004, .008, .016, .032, .064, .128, .256, .512, 1, 2, 5},
		}, []string{"method"}),
		inFlight: f.NewGauge(prometheus.GaugeOpts{
			Name: "oneoffice_worker_in_flight",
			Help: "Commands being handled now; saturation is this over oneoffice_worker_concurrency.",
		}),
		concurrency: f.NewGauge(prometheus.GaugeOpts{
			Name: "oneoffice_worker_concurrency",
			Help: "Configured WORKER_CONCURRENCY.",
		}),
		redeliveries: f.NewCounter(prometheus.CounterOpts{
			Name: "oneoffice_worker_redeliveries_total",
			Help: "Commands delivered again by the broker (a worker died or gave them back).",
		}),
		deadLettered: f.NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffice_worker_dead_lettered_total",
			Help: "Commands sent to the dead-letter queue, by reason (decode, invalid, panic, permanent).",
		}, []string{"reason"}),
		retries: f.NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffice_worker_retries_total",
			Help: "Transient failures retried with backoff, by dependency (database, redis, storage).",
		}, []string{"dependency"}),
		dbErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "oneoffice_worker_database_errors_total",
			Help: "Failed attempts of a command against the database (transient or permanent).",
		}),
		connected: f.NewGauge(prometheus.GaugeOpts{
			Name: "oneoffice_worker_broker_connected",
			Help: "1 while the worker holds a connection to the broker.",
		}),
	}
	m.concurrency.Set(float64(concurrency))
	m.methods = make(map[string]*methodMetrics)
	for _, method := range protocol.Names() {
		mm := &methodMetrics{commands: make(map[string]prometheus.Counter), duration: m.duration.WithLabelValues(method)}
		for _, o := range []string{OutcomeOK, OutcomeRejected, OutcomeDeadLettered, OutcomeRequeued} {
			mm.commands[o] = m.commands.WithLabelValues(method, o)
		}
		m.methods[method] = mm
	}
	for _, r := range []string{"decode", "invalid", "panic", "permanent"} {
		m.deadLettered.WithLabelValues(r)
	}
	m.retries.WithLabelValues("database")
	m.retries.WithLabelValues("redis")
	m.retries.WithLabelValues("storage")
	return m
}

// methodMetrics are the series of one method: its commands by outcome and its
// duration.
type methodMetrics struct {
	commands map[string]prometheus.Counter
	duration prometheus.Observer
}

// ofMethod returns the series of the method called name, nil if no method is:
// the method label takes registered names only, so a message of any other type
// adds no series.
func (m *Metrics) ofMethod(name string) *methodMetrics { return m.methods[name] }

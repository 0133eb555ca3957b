package rpc

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics of the RPC client.
type Metrics struct {
	roundTrip prometheus.Histogram
	confirm   prometheus.Histogram
	connected prometheus.Gauge
}

// NewMetrics registers the RPC client's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		roundTrip: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "oneoffice_gateway_rpc_duration_seconds",
			Help:    "Publish to reply of a command that was answered in time.",
			Buckets: []float64{.001, .002, .003, .005, .0075, .01, .015, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		confirm: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "oneoffice_gateway_publish_confirm_seconds",
			Help:    "Publish to publisher confirm of a command.",
			Buckets: []float64{.0005, .001, .002, .003, .005, .0075, .01, .025, .05, .1, .5, 1},
		}),
		connected: f.NewGauge(prometheus.GaugeOpts{
			Name: "oneoffice_gateway_broker_connected",
			Help: "1 while the gateway holds a channel to the broker.",
		}),
	}
}

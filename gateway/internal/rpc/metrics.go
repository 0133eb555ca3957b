package rpc

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics of the RPC client.
type Metrics struct {
	roundTrip prometheus.Histogram
	confirm   prometheus.Histogram
	// batch is the commands per message the publisher sends.
	batch     prometheus.Histogram
	connected prometheus.Gauge
	blocked   prometheus.Gauge
	// unconfirmed counts commands written whose publish was not confirmed by
	// the deadline: their outcome is unknown, the partner got 202.
	unconfirmed prometheus.Counter
	// nacked counts copies of commands the broker nacked; each was published
	// again within the call's deadline.
	nacked prometheus.Counter
	// carried is the commands answered 202 unconfirmed that the client is
	// still publishing; carriedConfirmed and carriedLost count how each
	// ended.
	carried          prometheus.Gauge
	carriedConfirmed prometheus.Counter
	carriedLost      prometheus.Counter
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
		batch: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "oneoffice_gateway_publish_batch_commands",
			Help:    "Commands per message published: the commands that queued while the last message awaited its confirm go out together, up to RPC_BATCH_MAX.",
			Buckets: []float64{1, 2, 4, 8, 16, 32},
		}),
		connected: f.NewGauge(prometheus.GaugeOpts{
			Name: "oneoffice_gateway_broker_connected",
			Help: "1 while the gateway holds a channel to the broker.",
		}),
		blocked: f.NewGauge(prometheus.GaugeOpts{
			Name: "oneoffice_gateway_broker_blocked",
			Help: "1 while the broker blocks the gateway's publishes (connection.blocked: a memory or disk alarm); calls are answered 503 meanwhile.",
		}),
		unconfirmed: f.NewCounter(prometheus.CounterOpts{
			Name: "oneoffice_gateway_publish_unconfirmed_total",
			Help: "Commands sent whose publish was not confirmed by the deadline: outcome unknown, answered 202.",
		}),
		nacked: f.NewCounter(prometheus.CounterOpts{
			Name: "oneoffice_gateway_publish_nacked_total",
			Help: "Copies of commands the broker nacked (a quorum queue changing leader); each is published again until confirmed.",
		}),
		carried: f.NewGauge(prometheus.GaugeOpts{
			Name: "oneoffice_gateway_carried_commands",
			Help: "Commands answered 202 with their publish unconfirmed that the gateway still publishes again until a copy is confirmed.",
		}),
		carriedConfirmed: f.NewCounter(prometheus.CounterOpts{
			Name: "oneoffice_gateway_carried_confirmed_total",
			Help: "Commands answered 202 unconfirmed whose later copy the broker confirmed.",
		}),
		carriedLost: f.NewCounter(prometheus.CounterOpts{
			Name: "oneoffice_gateway_carried_lost_total",
			Help: "Commands answered 202 unconfirmed that no copy reached the broker within 15 minutes, or at shutdown: their key expires and a retry runs them.",
		}),
	}
}

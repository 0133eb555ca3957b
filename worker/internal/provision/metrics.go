package provision

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics of the provisioning service.
type Metrics struct {
	insertRows   prometheus.Histogram
	ledgerPruned prometheus.Counter
}

// NewMetrics registers the provisioning metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return &Metrics{
		insertRows: promauto.With(reg).NewHistogram(prometheus.HistogramOpts{
			Name:    "oneoffice_worker_customer_insert_rows",
			Help:    "createCustomer rows per insert statement: concurrent commands share one statement and one commit.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
		}),
		ledgerPruned: promauto.With(reg).NewCounter(prometheus.CounterOpts{
			Name: "oneoffice_worker_ledger_pruned_total",
			Help: "Command ledger rows deleted after LEDGER_RETENTION.",
		}),
	}
}

package provision

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics of the provisioning service.
type Metrics struct {
	insertRows     prometheus.Histogram
	ledgerPruned   prometheus.Counter
	storageErrors  *prometheus.CounterVec
	orphansRemoved prometheus.Counter
}

// NewMetrics registers the provisioning metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		insertRows: promauto.With(reg).NewHistogram(prometheus.HistogramOpts{
			Name:    "oneoffice_worker_customer_insert_rows",
			Help:    "createCustomer rows per insert statement: concurrent commands share one statement and one commit.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
		}),
		ledgerPruned: promauto.With(reg).NewCounter(prometheus.CounterOpts{
			Name: "oneoffice_worker_ledger_pruned_total",
			Help: "Command ledger rows deleted after LEDGER_RETENTION.",
		}),
		storageErrors: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "oneoffice_worker_storage_errors_total",
			Help: "Failures to make a tenant directory under STORAGE_ROOT, by errno (ENOSPC, EDQUOT, EROFS, EIO: retried; EACCES, other: dead-lettered).",
		}, []string{"errno"}),
		orphansRemoved: promauto.With(reg).NewCounter(prometheus.CounterOpts{
			Name: "oneoffice_worker_storage_orphans_removed_total",
			Help: "Tenant directories without a tenant row removed by the sweeper after STORAGE_ORPHAN_GRACE.",
		}),
	}
	for _, e := range storageErrnos {
		m.storageErrors.WithLabelValues(e)
	}
	return m
}

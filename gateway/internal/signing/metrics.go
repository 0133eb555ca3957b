package signing

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Outcomes of a signature check, the values of the outcome label.
const (
	outcomeOK           = "ok"
	outcomeBadSignature = "bad_signature" // missing, malformed or wrong
	outcomeReplayed     = "replayed"      // nonce already used in the window
	outcomeStale        = "stale"         // timestamp outside the window
	outcomeUnavailable  = "unavailable"   // the database or Redis could not answer
)

// metrics of the signature checks. Only calls of partners that sign are
// counted, except unavailable, which is counted whenever the check could not
// be made.
type metrics struct {
	checks *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{checks: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "oneoffice_signed_requests_total",
		Help: "Signature checks of calls from partners that sign, by outcome (ok, bad_signature, replayed, stale, unavailable).",
	}, []string{"outcome"})}
	for _, o := range []string{outcomeOK, outcomeBadSignature, outcomeReplayed, outcomeStale, outcomeUnavailable} {
		m.checks.WithLabelValues(o)
	}
	return m
}

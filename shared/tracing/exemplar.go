package tracing

import (
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// Observe records v on o, with span's trace id as its exemplar when the span
// is recorded and sampled (so the trace is exported): a latency panel links
// the point to its trace. Otherwise (a partner's traceparent passed through
// with tracing off included) it is a plain Observe.
func Observe(o prometheus.Observer, v float64, span trace.Span) {
	if sc := span.SpanContext(); span.IsRecording() && sc.IsSampled() {
		if e, ok := o.(prometheus.ExemplarObserver); ok {
			e.ObserveWithExemplar(v, prometheus.Labels{"trace_id": sc.TraceID().String()})
			return
		}
	}
	o.Observe(v)
}

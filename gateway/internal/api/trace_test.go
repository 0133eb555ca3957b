package api

import (
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/oneoffice/provisioner/shared/tracing"
)

// With tracing off a call without a traceparent costs the tracing code no
// allocation; with one, the partner's context is passed on to the answer.
func TestTracingOffCostsACallNothing(t *testing.T) {
	app := fiber.New()
	h := &handler{Deps: Deps{Tracing: tracing.Off}}
	rc := &fasthttp.RequestCtx{}
	c := app.AcquireCtx(rc)
	defer app.ReleaseCtx(c)
	cl := &call{rid: "r", method: "createCustomer"}
	allocs := testing.AllocsPerRun(100, func() {
		span := h.startSpan(c)
		endSpan(span, cl, 200)
	})
	if allocs != 0 {
		t.Errorf("tracing off, no traceparent: %v allocations per call, want 0", allocs)
	}

	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	rc.Request.Header.Set("traceparent", tp)
	span := h.startSpan(c)
	if span.IsRecording() || span.SpanContext().TraceID().String() != tp[3:35] {
		t.Errorf("tracing off, with a traceparent: recording %v, trace %s", span.IsRecording(), span.SpanContext().TraceID())
	}
	if got := string(rc.Response.Header.Peek("traceparent")); got != tp {
		t.Errorf("answer's traceparent %q, want the partner's %q passed on", got, tp)
	}
}

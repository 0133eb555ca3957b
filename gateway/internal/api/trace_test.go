package api

import (
	"context"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/oneoffice/provisioner/shared/tracing"
)

// With tracing off a call without a traceparent gets a new trace id (not
// sampled) in its answer for a few small allocations; with one, the
// partner's context is passed on to the answer.
func TestTracingOffCostsACallNothing(t *testing.T) {
	app := fiber.New()
	h := &handler{Deps: Deps{Tracing: tracing.Off}}
	rc := &fasthttp.RequestCtx{}
	c := app.AcquireCtx(rc)
	defer app.ReleaseCtx(c)
	cl := &call{rid: "r", method: "createCustomer"}
	fresh := func() { c.SetUserContext(context.Background()) } // as for every new request
	allocs := testing.AllocsPerRun(100, func() {
		fresh()
		span := h.startSpan(c)
		endSpan(span, cl, 200)
	})
	if allocs > 4 {
		t.Errorf("tracing off, no traceparent: %v allocations per call, want at most 4", allocs)
	}
	fresh()
	first := h.startSpan(c).SpanContext()
	if got := string(rc.Response.Header.Peek("traceparent")); !first.IsValid() || first.IsSampled() ||
		got != "00-"+first.TraceID().String()+"-"+first.SpanID().String()+"-00" {
		t.Errorf("tracing off, no traceparent: span context %v, answer's traceparent %q; want a new unsampled one", first, got)
	}
	fresh()
	if second := h.startSpan(c).SpanContext(); second.TraceID() == first.TraceID() {
		t.Errorf("two calls share trace id %s", first.TraceID())
	}

	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	rc.Request.Header.Set("traceparent", tp)
	fresh()
	span := h.startSpan(c)
	if span.IsRecording() || span.SpanContext().TraceID().String() != tp[3:35] {
		t.Errorf("tracing off, with a traceparent: recording %v, trace %s", span.IsRecording(), span.SpanContext().TraceID())
	}
	if got := string(rc.Response.Header.Peek("traceparent")); got != tp {
		t.Errorf("answer's traceparent %q, want the partner's %q passed on", got, tp)
	}
}

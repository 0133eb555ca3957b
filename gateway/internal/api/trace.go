package api

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/oneoffice/provisioner/shared/tracing"
)

// headers carries W3C trace context in and out of a call: the request's
// traceparent and tracestate are read, the response's written. One pointer,
// so that it becomes a propagation carrier without an allocation.
type headers struct{ c *fiber.Ctx }

// Get copies the value: the server reuses a request's header memory after it.
func (h headers) Get(key string) string {
	if v := h.c.Get(key); v != "" {
		return strings.Clone(v)
	}
	return ""
}
func (h headers) Set(key, value string) { h.c.Set(key, value) }
func (headers) Keys() []string          { return []string{"traceparent", "tracestate"} }

// startSpan begins the call's server span (HTTP semantic conventions), as a
// child of the partner's traceparent when it sends one, and makes its
// context the call's. With tracing off there is no span: a partner's
// traceparent is passed on as it came, to the logs, the command and the
// answer, and a call without one gets a new trace id, not sampled.
func (h *handler) startSpan(c *fiber.Ctx) trace.Span {
	ctx := tracing.Propagator.Extract(c.UserContext(), headers{c})
	if h.Tracing.Enabled() {
		// The span outlives the handler, whose strings it must not share.
		method := strings.Clone(c.Method())
		ctx, _ = h.Tracing.Tracer().Start(ctx, method+" /", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(tracing.HTTPMethod.String(method), tracing.HTTPRoute.String("/"),
				tracing.URLPath.String(strings.Clone(c.Path())), tracing.URLScheme.String(c.Protocol()),
				tracing.ClientAddress.String(c.IP()), tracing.UserAgent.String(strings.Clone(c.Get(fiber.HeaderUserAgent)))))
	}
	if !trace.SpanContextFromContext(ctx).IsValid() {
		// Untraced and no traceparent: the call still gets a trace id (not
		// sampled), so that its log lines, its ledger row and the answer's
		// traceparent name it.
		ctx = trace.ContextWithSpanContext(ctx, newSpanContext())
	}
	c.SetUserContext(ctx)
	tracing.Propagator.Inject(ctx, headers{c})
	return trace.SpanFromContext(ctx)
}

// newSpanContext is a new trace and span id, not sampled.
func newSpanContext() trace.SpanContext {
	var tid trace.TraceID
	var sid trace.SpanID
	binary.LittleEndian.PutUint64(tid[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(tid[8:], rand.Uint64())
	binary.LittleEndian.PutUint64(sid[:], rand.Uint64()|1) // never all zero
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid})
}

// endSpan records how the call ended on its span and ends it: the status
// code, the API method, partner and request id, the idempotency outcome; a
// 5xx is an error (a 4xx is the partner's, not the server's, by the HTTP
// conventions, told apart by its status code).
func endSpan(span trace.Span, cl *call, status int) {
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{tracing.HTTPStatusCode.Int(status), tracing.APIMethod.String(cl.method),
		tracing.RequestID.String(cl.rid)}
	if cl.partner != 0 {
		attrs = append(attrs, tracing.Partner.Int64(cl.partner))
	}
	if cl.idem != "" {
		attrs = append(attrs, attribute.String("oneoffice.idempotency", cl.idem))
	}
	span.SetAttributes(attrs...)
	if status >= http.StatusInternalServerError {
		span.SetAttributes(tracing.ErrorType.String(strconv.Itoa(status)))
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}

// event adds a named event to the call's span, when it is recorded.
func event(ctx context.Context, name string, attrs ...attribute.KeyValue) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent(name, trace.WithAttributes(attrs...))
	}
}

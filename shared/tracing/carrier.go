package tracing

import (
	"context"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"
)

// Table carries trace context in the headers of an AMQP message.
type Table amqp.Table

// Get returns the header key when it is text, "" otherwise.
func (t Table) Get(key string) string {
	s, _ := t[key].(string)
	return s
}

// Set sets the header key.
func (t Table) Set(key, value string) { t[key] = value }

// Keys lists the headers.
func (t Table) Keys() []string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	return keys
}

// TraceID is the trace id of ctx's span, "" when it has none.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

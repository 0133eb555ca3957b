package rpc

import (
	"context"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/tracing"
)

// startPublish begins the publish's PRODUCER span (messaging conventions for
// RabbitMQ), from the handing of the command to the broker to its confirm,
// every copy included, and writes its context into the message's headers
// (traceparent, tracestate), where the worker's consumer span finds its
// parent. With tracing off a partner's trace context is passed on as it came.
func (c *Client) startPublish(ctx context.Context, pub *amqp.Publishing) (context.Context, trace.Span) {
	if c.Tracing.Enabled() {
		ctx, _ = c.Tracing.Tracer().Start(ctx, "publish "+amqpx.Exchange, trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(tracing.Message("publish", tracing.OpSend, amqpx.Exchange, amqpx.RoutingKey,
				pub.MessageId, pub.CorrelationId)...),
			trace.WithAttributes(tracing.MessagingBodySize.Int(len(pub.Body)), tracing.APIMethod.String(pub.Type)))
	}
	if trace.SpanContextFromContext(ctx).IsValid() {
		tracing.Propagator.Inject(ctx, tracing.Table(pub.Headers))
	}
	return ctx, trace.SpanFromContext(ctx)
}

// endPublish ends the publish's span: an error when no copy was confirmed;
// carried says the command goes on being published after its call.
func endPublish(span trace.Span, err error, carried bool) {
	if !span.IsRecording() {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	if carried {
		span.AddEvent("carried after the call: published again until confirmed")
	}
	span.End()
}

// republished notes on the publish's span that a copy is published again.
func republished(ctx context.Context, why string, copies int) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("published again", trace.WithAttributes(attribute.String("oneoffice.reason", why),
			attribute.Int("oneoffice.copies", copies)))
	}
}

package consumer

import (
	"context"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/oneoffice/provisioner/shared/tracing"
)

// startSpan begins a delivery's CONSUMER span (messaging conventions for
// RabbitMQ), the child of the publish whose context the message's headers
// carry (traceparent, tracestate). Everything the command does runs under
// it: the PostgreSQL and Redis spans, the reply and the settlement. With
// tracing off there is no span, and the headers' context (a partner's
// traceparent passed on) still reaches the log line and the ledger.
func (c *Consumer) startSpan(ctx context.Context, d *amqp.Delivery) (context.Context, trace.Span) {
	if len(d.Headers) > 0 {
		ctx = tracing.Propagator.Extract(ctx, tracing.Table(d.Headers))
	}
	if c.Tracing.Enabled() {
		attrs := append(tracing.Message("process", tracing.OpProcess, d.Exchange, d.RoutingKey, d.MessageId, d.CorrelationId),
			tracing.MessagingDeliveryTag.Int64(int64(d.DeliveryTag)), tracing.MessagingBodySize.Int(len(d.Body)),
			tracing.APIMethod.String(d.Type))
		ctx, _ = c.Tracing.Tracer().Start(ctx, "process "+cmpExchange(d.Exchange), trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attrs...))
		if d.Redelivered {
			trace.SpanFromContext(ctx).AddEvent("redelivered", trace.WithAttributes(attribute.Bool("oneoffice.redelivered", true)))
		}
	}
	return ctx, trace.SpanFromContext(ctx)
}

func cmpExchange(name string) string {
	if name == "" {
		return "amq.default"
	}
	return name
}

// endSpan records a delivery's outcome on its span and ends it: the
// command's request id, partner and outcome; a dead-letter is an error with
// its reason, a requeue and a ledger replay are events.
func endSpan(span trace.Span, o *outcome, label string) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(tracing.RequestID.String(o.cmd.RequestID), tracing.Partner.Int64(o.cmd.Partner),
		attribute.String("oneoffice.outcome", label))
	if o.reply != nil {
		span.SetAttributes(attribute.Int("oneoffice.status", o.reply.Status))
		if o.reply.Replayed {
			span.AddEvent("replayed from the ledger")
		}
	}
	switch o.settle {
	case settleDeadLetter:
		span.AddEvent("dead-lettered", trace.WithAttributes(attribute.String("oneoffice.reason", o.reason)))
		msg := o.reason
		if o.err != nil {
			span.RecordError(o.err)
			msg = o.err.Error()
		}
		span.SetStatus(codes.Error, msg)
	case settleRequeue:
		span.AddEvent("requeued", trace.WithAttributes(attribute.String("oneoffice.reason", o.reason)))
	}
	span.End()
}

// settleSpan begins the span of a delivery's settlement with the broker (ack
// or nack, operation type settle), under its consumer span.
func (c *Consumer) settleSpan(ctx context.Context, op string, d *amqp.Delivery) trace.Span {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return trace.SpanFromContext(ctx)
	}
	_, span := c.Tracing.Tracer().Start(ctx, op+" "+cmpExchange(d.Exchange), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(tracing.Message(op, tracing.OpSettle, d.Exchange, d.RoutingKey, d.MessageId, d.CorrelationId)...),
		trace.WithAttributes(tracing.MessagingDeliveryTag.Int64(int64(d.DeliveryTag))))
	return span
}

// endSettle ends a settlement's span. An ack the settler coalesced says how
// many deliveries its one multiple ack settled (messaging.batch.message_count),
// or that it was held for a later one.
func endSettle(span trace.Span, acked int, held bool, err error) {
	if !span.IsRecording() {
		return
	}
	switch {
	case acked > 0:
		span.SetAttributes(tracing.MessagingBatchMessageCount.Int(acked))
	case held:
		span.AddEvent("held: acked with a later delivery's multiple ack")
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// replySpan begins the reply's PRODUCER span, to the gateway's reply queue
// through the default exchange.
func (c *Consumer) replySpan(ctx context.Context, d *amqp.Delivery) trace.Span {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return trace.SpanFromContext(ctx)
	}
	_, span := c.Tracing.Tracer().Start(ctx, "publish amq.default", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(tracing.Message("publish", tracing.OpSend, "", d.ReplyTo, "", d.CorrelationId)...))
	return span
}

func endReply(span trace.Span, err error) {
	if !span.IsRecording() {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// observe times a delivery, with its trace as the exemplar.
func observe(mm *methodMetrics, elapsed time.Duration, span trace.Span) {
	tracing.Observe(mm.duration, elapsed.Seconds(), span)
}

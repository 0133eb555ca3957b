// Package tracing sets up OpenTelemetry tracing for a process from the
// standard OTEL_* variables, and holds what both binaries share: the W3C
// propagator, carriers for HTTP and AMQP headers, and the messaging
// attributes of RabbitMQ spans.
//
// Tracing is on only when an OTLP endpoint is named
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) and
// OTEL_SDK_DISABLED is not true. Off, the tracer provider is OpenTelemetry's
// no-op: no exporter, no goroutine, nothing dialled, and a span costs one
// context; the propagator still carries a partner's traceparent through to
// the worker, so its trace id reaches the logs and the ledger all the same.
//
// On, the SDK reads the rest of the standard variables itself:
// OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf, the default, or grpc), the
// endpoint, headers and timeout variables, OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
// (default parentbased_always_on), and the OTEL_BSP_* batch settings.
package tracing

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Scope is the instrumentation scope of the spans this project makes.
const Scope = "github.com/oneoffice/provisioner"

// Propagator is the W3C trace context propagator (traceparent, tracestate).
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Provider is the process's tracer provider: the SDK's once Setup turned
// tracing on, the no-op one before and otherwise.
type Provider struct {
	tp       trace.TracerProvider
	tracer   trace.Tracer // the project's, made once
	on       bool
	shutdown func(context.Context) error
}

func newProvider(tp trace.TracerProvider, on bool, shutdown func(context.Context) error) *Provider {
	return &Provider{tp: tp, tracer: tp.Tracer(Scope), on: on, shutdown: shutdown}
}

// TracerProvider is the OpenTelemetry provider, for instrumentation
// libraries.
func (p *Provider) TracerProvider() trace.TracerProvider {
	if p == nil {
		return Off.tp
	}
	return p.tp
}

// Enabled reports whether spans are recorded and exported. Instrumentation
// that costs work per call (the PostgreSQL and Redis hooks) is installed
// only then.
func (p *Provider) Enabled() bool { return p != nil && p.on }

// Tracer is the project's tracer of p; the no-op tracer for a nil p.
func (p *Provider) Tracer() trace.Tracer {
	if p == nil {
		return Off.tracer
	}
	return p.tracer
}

// Shutdown exports the spans still buffered and stops the exporter.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil || p.shutdown == nil {
		return nil
	}
	return p.shutdown(ctx)
}

// Flush shuts p down at the end of a process, exporting the spans still
// buffered within five seconds; a failure is logged.
func Flush(p *Provider, log *slog.Logger) {
	if !p.Enabled() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		log.Warn("spans not exported at exit", "error", err)
	}
}

// Off is the no-op provider.
var Off = newProvider(noop.NewTracerProvider(), false, nil)

// Setup builds the provider that getenv describes and installs it, with the
// propagator, as OpenTelemetry's global. service names the process when
// OTEL_SERVICE_NAME does not.
func Setup(ctx context.Context, getenv func(string) string, service string) (*Provider, error) {
	otel.SetTextMapPropagator(Propagator)
	if !On(getenv) {
		otel.SetTracerProvider(Off.tp)
		return Off, nil
	}
	exp, err := exporter(ctx, getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	if err != nil {
		return nil, err
	}
	// resource.Default reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES;
	// the service name given here only fills in when neither names one.
	res := resource.Default()
	if getenv("OTEL_SERVICE_NAME") == "" && !strings.Contains(getenv("OTEL_RESOURCE_ATTRIBUTES"), "service.name=") {
		if res, err = resource.Merge(res, resource.NewSchemaless(attribute.String("service.name", service))); err != nil {
			return nil, fmt.Errorf("tracing resource: %w", err)
		}
	}
	// The sampler is the SDK's default, which follows OTEL_TRACES_SAMPLER.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return newProvider(tp, true, tp.Shutdown), nil
}

// On reports whether getenv turns tracing on: an OTLP endpoint named and
// the SDK not disabled.
func On(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	return cmp.Or(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), getenv("OTEL_EXPORTER_OTLP_ENDPOINT")) != ""
}

// exporter is the OTLP exporter of the protocol named (the traces' own
// variable first): http/protobuf unless grpc.
func exporter(ctx context.Context, protocols ...string) (sdktrace.SpanExporter, error) {
	var (
		exp *otlptrace.Exporter
		err error
	)
	switch p := cmp.Or(protocols...); p {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want http/protobuf or grpc", p)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	return exp, nil
}
